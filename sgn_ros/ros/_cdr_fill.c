/*
 * sgn_ros.ros._cdr_fill: the per-voxel passes of sgn_ros.ros.wire in one loop each, written
 * straight into the serialized message.
 *
 * Why native: with NumPy each output costs 5-10 passes over multi-megabyte arrays (selection
 * mask, flat indices, free faces, gathers, a per-class sort, a final join of the parts), which
 * on a 2-core robot computer and cold caches after a network forward is 15-20 ms per frame for
 * the three outputs. Here each message is one pass over the label volume that writes its bytes
 * in place, with the GIL released, so the node's two publish threads run side by side.
 *
 * Division of work: Python (sgn_ros.ros.wire) lays out the message with its CdrWriter: every
 * fixed field is bytes, every per-voxel array a *slot* (an int: its size in bytes) at the right
 * alignment. `count` tells Python the slot sizes; `points` / `markers` / `grid` allocate the
 * final `bytes`, copy the fixed parts and fill the slots. The arithmetic is the NumPy path's,
 * in the same order and precision, so the bytes are equal (test_wire checks every case); build
 * with -ffp-contract=off (no fused multiply-adds; there are only adds here anyway).
 *
 * Occupied voxel: label not 0 (empty) and not 255 (no prediction), and, with a threshold > 0,
 * confidence >= threshold compared in float32 (NumPy casts a Python float to the array's
 * float32): exactly wire._keep_mask.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *lab;
    const float *conf; /* NULL: no confidence */
    float thr;
    int use_thr;
    Py_ssize_t X, Y, Z;
} Volume;

static inline int occupied(const Volume *v, Py_ssize_t n) {
    if ((uint8_t)(v->lab[n] - 1) >= 254) return 0;
    return !v->use_thr || v->conf[n] >= v->thr; /* NaN confidence: not occupied, as NumPy */
}

/* The occupied voxels of one row of the volume (the Z voxels from n0 on): their k, in order,
 * into ks; returns how many. Eight labels at a time as one 64-bit word: an all-air word (the
 * most common by far) is one test, and in a mixed word the occupied bytes (not 0, not 255) are
 * found with exact byte-wise bit tricks, so there is no branch per voxel to mispredict. */
static inline Py_ssize_t row_occupied(const Volume *v, Py_ssize_t n0, int32_t *ks) {
    const uint8_t *row = v->lab + n0;
    Py_ssize_t cnt = 0, k = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL, high = 0x8080808080808080ULL;
    for (; k + 8 <= v->Z; k += 8) {
        uint64_t w;
        memcpy(&w, row + k, 8);
        if (!w) continue;
        const uint64_t zero = ~(((w & low7) + low7) | w) & high; /* 0x80 in each byte that is 0 */
        const uint64_t nw = ~w, full = ~(((nw & low7) + low7) | nw) & high; /* ... that is 255 */
        for (uint64_t m = high & ~(zero | full); m; m &= m - 1) {
            const Py_ssize_t kk = k + (__builtin_ctzll(m) >> 3);
            ks[cnt] = (int32_t)kk; /* kept when at or above the threshold: no branch to mispredict */
            cnt += !v->use_thr || v->conf[n0 + kk] >= v->thr;
        }
    }
#endif
    for (; k < v->Z; k++)
        if (occupied(v, n0 + k)) ks[cnt++] = (int32_t)k;
    return cnt;
}

/* An occupied voxel with a free face: a 6-neighbour that is not occupied or outside the grid. */
static inline int has_free_face(const Volume *v, Py_ssize_t n, Py_ssize_t i, Py_ssize_t j, Py_ssize_t k) {
    const Py_ssize_t yz = v->Y * v->Z;
    return i == 0 || i == v->X - 1 || j == 0 || j == v->Y - 1 || k == 0 || k == v->Z - 1 ||
           !occupied(v, n - yz) || !occupied(v, n + yz) || !occupied(v, n - v->Z) || !occupied(v, n + v->Z) ||
           !occupied(v, n - 1) || !occupied(v, n + 1);
}

/* ------------------------------------------------------------------------- buffers */
typedef struct {
    Py_buffer views[12];
    int n;
} Buffers;

static void release_all(Buffers *b) {
    for (int i = 0; i < b->n; i++) PyBuffer_Release(&b->views[i]);
    b->n = 0;
}

/* A C-contiguous buffer of `count` items of struct format `fmt` ("B", "f", "d", "I"). */
static const void *get_array(Buffers *b, PyObject *obj, const char *fmt, Py_ssize_t itemsize, Py_ssize_t count,
                             const char *what) {
    Py_buffer *view = &b->views[b->n];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    b->n++;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (strcmp(f, fmt) != 0 || view->itemsize != itemsize || (count >= 0 && view->len != count * itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of format '%s', got %zd bytes of format '%s'", what,
                     count, fmt, (Py_ssize_t)view->len, view->format ? view->format : "B");
        return NULL;
    }
    return view->buf;
}

static int get_volume(Buffers *b, Volume *v, PyObject *labels, PyObject *dims, PyObject *conf, double threshold) {
    if (!PyArg_ParseTuple(dims, "nnn", &v->X, &v->Y, &v->Z)) return -1;
    if (v->X < 1 || v->Y < 1 || v->Z < 1) {
        PyErr_SetString(PyExc_ValueError, "dims: expected three positive sizes");
        return -1;
    }
    const Py_ssize_t n = v->X * v->Y * v->Z;
    v->lab = get_array(b, labels, "B", 1, n, "labels");
    if (!v->lab) return -1;
    v->conf = NULL;
    if (conf != Py_None) {
        v->conf = get_array(b, conf, "f", 4, n, "confidence");
        if (!v->conf) return -1;
    }
    v->thr = (float)threshold;
    v->use_thr = v->conf != NULL && threshold > 0;
    return 0;
}

/* ------------------------------------------------------------------------- message layout */
#define MAX_SLOTS 256

typedef struct {
    PyObject *out;                 /* the bytes being built */
    char *slot[MAX_SLOTS];         /* where each slot starts */
    Py_ssize_t size[MAX_SLOTS];    /* and its size */
    int nslots;
} Layout;

/* parts: a list of bytes (copied) and ints (a slot of that many bytes, filled by a kernel). */
static int layout(Layout *L, PyObject *parts) {
    PyObject *seq = PySequence_Fast(parts, "parts: expected a list of bytes and slot sizes");
    if (!seq) return -1;
    const Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t total = 0;
    L->nslots = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (PyBytes_Check(items[i])) {
            total += PyBytes_GET_SIZE(items[i]);
        } else if (PyLong_Check(items[i])) {
            const Py_ssize_t s = PyLong_AsSsize_t(items[i]);
            if (s < 0 || L->nslots == MAX_SLOTS) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "parts: bad slot (negative or too many)");
                Py_DECREF(seq);
                return -1;
            }
            L->size[L->nslots++] = s;
            total += s;
        } else {
            PyErr_SetString(PyExc_TypeError, "parts: expected bytes or int items");
            Py_DECREF(seq);
            return -1;
        }
    }
    L->out = PyBytes_FromStringAndSize(NULL, total);
    if (!L->out) {
        Py_DECREF(seq);
        return -1;
    }
    char *p = PyBytes_AS_STRING(L->out);
    int s = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (PyBytes_Check(items[i])) {
            memcpy(p, PyBytes_AS_STRING(items[i]), PyBytes_GET_SIZE(items[i]));
            p += PyBytes_GET_SIZE(items[i]);
        } else {
            L->slot[s] = p;
            p += L->size[s++];
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* ------------------------------------------------------------------------- count */
PyDoc_STRVAR(count_doc,
             "count(labels, dims, confidence, threshold, surface) -> (per_class, per_class_surface, mask)\n\n"
             "Occupied voxels per class (256 ints); with `surface` also per class those with a free face\n"
             "and the bit mask of those voxels (else None, None): the sizes of the markers' slots\n"
             "(`occupied` gives the points' one), and what `markers` then fills them from. The mask has\n"
             "ceil(Z / 64) little-endian uint64 words per row (i, j): bit k % 64 of word k / 64 = voxel k.");

/* 64-bit words per row of a surface mask (`count`, `markers`) */
static inline Py_ssize_t mask_words_per_row(Py_ssize_t Z) { return (Z + 63) / 64; }

static PyObject *py_count(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *labels, *dims, *conf;
    double threshold;
    int surface;
    if (!PyArg_ParseTuple(args, "OOOdp", &labels, &dims, &conf, &threshold, &surface)) return NULL;
    Buffers b = {.n = 0};
    Volume v;
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0) {
        release_all(&b);
        return NULL;
    }
    Py_ssize_t hist[256] = {0}, surf[256] = {0};
    /* the surface voxels as bits, so that `markers` fills its slots without testing faces again */
    const Py_ssize_t wpr = mask_words_per_row(v.Z);
    PyObject *mask = surface ? PyBytes_FromStringAndSize(NULL, v.X * v.Y * wpr * 8) : Py_NewRef(Py_None);
    int32_t *ks = mask ? PyMem_RawMalloc(sizeof(int32_t) * (size_t)v.Z) : NULL;
    if (!ks) {
        Py_XDECREF(mask);
        release_all(&b);
        return mask ? PyErr_NoMemory() : NULL;
    }
    uint64_t *bits = surface ? (uint64_t *)PyBytes_AS_STRING(mask) : NULL;
    uint8_t *kept = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (bits) memset(bits, 0, (size_t)(v.X * v.Y * wpr * 8));
    if (bits && v.use_thr) {
        /* a threshold: the labels with 255 below it, made once, so that the six neighbours of a
         * face test are label reads, not label and confidence reads */
        const Py_ssize_t n_all = v.X * v.Y * v.Z;
        kept = PyMem_RawMalloc((size_t)n_all);
        if (kept) {
            /* branch-free (confidences straddling a threshold are a coin toss per voxel); NaN: 255 */
            const uint8_t *restrict src = v.lab;
            const float *restrict cf = v.conf;
            const float thr = v.thr; /* locals: byte stores may alias anything, which would reload v's fields */
            uint8_t *restrict dst = kept;
            for (Py_ssize_t n = 0; n < n_all; n++) dst[n] = src[n] | (uint8_t)-(uint8_t)!(cf[n] >= thr);
            v.lab = kept;
            v.use_thr = 0; /* occupied(kept) == occupied(labels, confidence >= threshold), NaN included */
        }
    }
    for (Py_ssize_t i = 0, n0 = 0, row = 0; i < v.X; i++)
        for (Py_ssize_t j = 0; j < v.Y; j++, n0 += v.Z, row++) {
            const Py_ssize_t m = row_occupied(&v, n0, ks);
            for (Py_ssize_t r = 0; r < m; r++) {
                const Py_ssize_t k = ks[r], n = n0 + k;
                hist[v.lab[n]]++;
                if (bits && has_free_face(&v, n, i, j, k)) {
                    surf[v.lab[n]]++;
                    bits[row * wpr + (k >> 6)] |= 1ULL << (k & 63);
                }
            }
        }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(kept);
    PyMem_RawFree(ks);
    release_all(&b);
    PyObject *h = PyList_New(256), *s = surface ? PyList_New(256) : Py_NewRef(Py_None);
    if (!h || !s) {
        Py_XDECREF(h);
        Py_XDECREF(s);
        Py_DECREF(mask);
        return NULL;
    }
    for (int c = 0; c < 256; c++) {
        PyList_SET_ITEM(h, c, PyLong_FromSsize_t(hist[c]));
        if (surface) PyList_SET_ITEM(s, c, PyLong_FromSsize_t(surf[c]));
    }
    return Py_BuildValue("NNN", h, s, mask);
}

PyDoc_STRVAR(occupied_doc,
             "occupied(labels, dims, confidence, threshold) -> int\n\n"
             "How many voxels are occupied (the size of the points slot). Without a threshold a\n"
             "population count of 8-label words: no branch per voxel.");

static PyObject *py_occupied(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *labels, *dims, *conf;
    double threshold;
    if (!PyArg_ParseTuple(args, "OOOd", &labels, &dims, &conf, &threshold)) return NULL;
    Buffers b = {.n = 0};
    Volume v;
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0) {
        release_all(&b);
        return NULL;
    }
    int32_t *ks = PyMem_RawMalloc(sizeof(int32_t) * (size_t)v.Z);
    if (!ks) {
        release_all(&b);
        return PyErr_NoMemory();
    }
    Py_ssize_t total = 0;
    const Py_ssize_t n_all = v.X * v.Y * v.Z;
    Py_BEGIN_ALLOW_THREADS
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
    if (!v.use_thr) { /* the whole volume as words, whatever the rows */
        const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL, high = 0x8080808080808080ULL;
        Py_ssize_t n = 0;
        for (; n + 8 <= n_all; n += 8) {
            uint64_t w;
            memcpy(&w, v.lab + n, 8);
            const uint64_t zero = ~(((w & low7) + low7) | w) & high, nw = ~w;
            const uint64_t full = ~(((nw & low7) + low7) | nw) & high;
            /* at most one bit per byte (bit 7): summing the bytes is the population count, two
             * instructions instead of the libgcc call __builtin_popcountll makes without -mpopcnt */
            total += (Py_ssize_t)((((high & ~(zero | full)) >> 7) * 0x0101010101010101ULL) >> 56);
        }
        for (; n < n_all; n++) total += occupied(&v, n);
    } else
#endif
        for (Py_ssize_t n0 = 0; n0 < n_all; n0 += v.Z) total += row_occupied(&v, n0, ks);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(ks);
    release_all(&b);
    return PyLong_FromSsize_t(total);
}

/* ------------------------------------------------------------------------- PointCloud2 */
PyDoc_STRVAR(points_doc,
             "points(parts, labels, dims, confidence, threshold, tables, rgb, with_confidence) -> bytes\n\n"
             "PointCloud2 with its one slot filled: per occupied voxel in C order x, y, z float32 (from\n"
             "tables = (A0, A1, A2, t): float64 (X, 3), (Y, 3), (Z, 3), (3,), the centre in the output frame\n"
             "being ((A0[i] + A1[j]) + A2[k]) + t), rgb uint32 (rgb[label]), label uint32 and, with\n"
             "with_confidence, confidence float32.");

static PyObject *py_points(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *parts, *labels, *dims, *conf, *tables, *rgb_obj;
    double threshold;
    int with_conf;
    if (!PyArg_ParseTuple(args, "OOOOdOOp", &parts, &labels, &dims, &conf, &threshold, &tables, &rgb_obj,
                          &with_conf))
        return NULL;
    Buffers b = {.n = 0};
    Volume v;
    Layout L = {.out = NULL};
    PyObject *a0, *a1, *a2, *t_obj;
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0) goto fail;
    if (with_conf && !v.conf) {
        PyErr_SetString(PyExc_ValueError, "with_confidence: no confidence given");
        goto fail;
    }
    if (!PyArg_ParseTuple(tables, "OOOO", &a0, &a1, &a2, &t_obj)) goto fail;
    const double *A0 = get_array(&b, a0, "d", 8, 3 * v.X, "tables[0]");
    const double *A1 = A0 ? get_array(&b, a1, "d", 8, 3 * v.Y, "tables[1]") : NULL;
    const double *A2 = A1 ? get_array(&b, a2, "d", 8, 3 * v.Z, "tables[2]") : NULL;
    const double *t = A2 ? get_array(&b, t_obj, "d", 8, 3, "tables[3]") : NULL;
    if (!t) goto fail;
    const uint32_t *rgb = get_array(&b, rgb_obj, "I", 4, -1, "rgb");
    if (!rgb) goto fail;
    const Py_ssize_t ncolors = b.views[b.n - 1].len / 4;
    if (layout(&L, parts) < 0) goto fail;
    const Py_ssize_t step = with_conf ? 24 : 20;
    if (L.nslots != 1 || L.size[0] % step) {
        PyErr_SetString(PyExc_ValueError, "parts: expected one slot of whole points");
        goto fail;
    }
    char *dst = L.slot[0], *end = L.slot[0] + L.size[0];
    int bad_class = -1;
    int32_t *ks = PyMem_RawMalloc(sizeof(int32_t) * (size_t)v.Z);
    if (!ks) {
        PyErr_NoMemory();
        goto fail;
    }
    /* locals: stores through the char pointer may alias anything, which would reload fields */
    const uint8_t *lab = v.lab;
    const float *cf = v.conf;
    const double t0 = t[0], t1 = t[1], t2 = t[2];
    const Py_ssize_t nvox = v.X * v.Y * v.Z;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0, n0 = 0; i < v.X && bad_class < 0; i++)
        for (Py_ssize_t j = 0; j < v.Y && bad_class < 0; j++, n0 += v.Z) {
            const Py_ssize_t m = row_occupied(&v, n0, ks);
#if defined(__GNUC__)
            if (m && with_conf && n0 + 3 * v.Z <= nvox) { /* the next rows' confidence: a gather, not a stream */
                for (Py_ssize_t off = 0; off < 2 * v.Z; off += 16) __builtin_prefetch(cf + n0 + v.Z + off);
            }
#endif
            if (!m) continue;
            const double xy0 = A0[3 * i] + A1[3 * j], xy1 = A0[3 * i + 1] + A1[3 * j + 1],
                         xy2 = A0[3 * i + 2] + A1[3 * j + 2];
            if (dst + m * step > end) {
                bad_class = 256; /* more points than counted */
                break;
            }
            for (Py_ssize_t r = 0; r < m; r++) {
                const Py_ssize_t k = ks[r], n = n0 + k;
                const uint8_t c = lab[n];
                if (c >= ncolors) {
                    bad_class = c;
                    break;
                }
                /* each field stored straight into the message: a record assembled on the stack
                 * and then copied as a whole is read back with wider loads than it was written
                 * with, which stalls store-to-load forwarding on every point */
                const float x = (float)((xy0 + A2[3 * k]) + t0), y = (float)((xy1 + A2[3 * k + 1]) + t1),
                            z = (float)((xy2 + A2[3 * k + 2]) + t2);
                const uint32_t col = rgb[c], lab32 = c;
                memcpy(dst, &x, 4);
                memcpy(dst + 4, &y, 4);
                memcpy(dst + 8, &z, 4);
                memcpy(dst + 12, &col, 4);
                memcpy(dst + 16, &lab32, 4);
                if (with_conf) memcpy(dst + 20, cf + n, 4);
                dst += step;
            }
        }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(ks);
    if (bad_class >= 0 || dst != end) {
        if (bad_class >= 0 && bad_class < 256)
            PyErr_Format(PyExc_ValueError, "labels: class id %d has no colour (%zd classes)", bad_class, ncolors);
        else
            PyErr_SetString(PyExc_ValueError, "parts: the points slot does not match the occupied voxels");
        goto fail;
    }
    release_all(&b);
    return L.out;
fail:
    release_all(&b);
    Py_XDECREF(L.out);
    return NULL;
}

/* ------------------------------------------------------------------------- MarkerArray */
PyDoc_STRVAR(markers_doc,
             "markers(parts, classes, labels, dims, confidence, threshold, axes, surface, mask=None) -> bytes\n\n"
             "MarkerArray with its slots filled: slot s holds the centres (x, y, z float64, from\n"
             "axes = (X,), (Y,), (Z,) float64 per-axis tables) of the occupied voxels of class classes[s]\n"
             "(only those with a free face with `surface`), in C order. `surface` needs `mask` (the third\n"
             "value of `count`), which names those voxels: their faces are tested once, there.");

static PyObject *py_markers(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *parts, *classes, *labels, *dims, *conf, *axes, *mask_obj = Py_None;
    double threshold;
    int surface;
    if (!PyArg_ParseTuple(args, "OOOOOdOp|O", &parts, &classes, &labels, &dims, &conf, &threshold, &axes, &surface,
                          &mask_obj))
        return NULL;
    Buffers b = {.n = 0};
    Volume v;
    Layout L = {.out = NULL};
    PyObject *o0, *o1, *o2, *seq = NULL;
    char *cursor[256] = {0}, *stop[256] = {0};
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0) goto fail;
    if (!PyArg_ParseTuple(axes, "OOO", &o0, &o1, &o2)) goto fail;
    const double *ax0 = get_array(&b, o0, "d", 8, v.X, "axes[0]");
    const double *ax1 = ax0 ? get_array(&b, o1, "d", 8, v.Y, "axes[1]") : NULL;
    const double *ax2 = ax1 ? get_array(&b, o2, "d", 8, v.Z, "axes[2]") : NULL;
    if (!ax2) goto fail;
    const uint64_t *mask = NULL;
    const Py_ssize_t wpr = mask_words_per_row(v.Z);
    if ((mask_obj != Py_None) != !!surface) { /* the faces are tested once, by count */
        PyErr_SetString(PyExc_ValueError, surface ? "mask: surface needs the mask of count(..., surface=True)"
                                                  : "mask: only with surface (the mask of count(..., surface=True))");
        goto fail;
    }
    if (surface) {
        mask = get_array(&b, mask_obj, "B", 1, v.X * v.Y * wpr * 8, "mask");
        if (!mask) goto fail;
    }
    if (layout(&L, parts) < 0) goto fail;
    seq = PySequence_Fast(classes, "classes: expected a list of class ids");
    if (!seq) goto fail;
    if (PySequence_Fast_GET_SIZE(seq) != L.nslots) {
        PyErr_SetString(PyExc_ValueError, "classes: expected one class id per slot");
        goto fail;
    }
    for (int s = 0; s < L.nslots; s++) {
        const long c = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, s));
        if (c < 0 || c > 255 || cursor[c] || L.size[s] % 24) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "classes: bad, repeated or misfit class slot");
            goto fail;
        }
        cursor[c] = L.slot[s];
        stop[c] = L.slot[s] + L.size[s];
    }
    int bad = 0;
    int32_t *ks = PyMem_RawMalloc(sizeof(int32_t) * (size_t)v.Z);
    if (!ks) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    if (mask) { /* the surface voxels named by count's mask: a set bit of a word per voxel, no face test */
        for (Py_ssize_t i = 0, n0 = 0, row = 0; i < v.X && !bad; i++)
            for (Py_ssize_t j = 0; j < v.Y && !bad; j++, n0 += v.Z, row++)
                for (Py_ssize_t w = 0; w < wpr && !bad; w++) {
                    uint64_t word;
                    memcpy(&word, mask + row * wpr + w, 8);
                    for (; word; word &= word - 1) {
                        const Py_ssize_t k = 64 * w + __builtin_ctzll(word), n = n0 + k;
                        /* a bit beyond the row or on a voxel that is not occupied: not count's mask */
                        if (k >= v.Z || !occupied(&v, n)) {
                            bad = 2;
                            break;
                        }
                        const uint8_t c = v.lab[n];
                        if (cursor[c] == stop[c]) {
                            bad = 1;
                            break;
                        }
                        const double p[3] = {ax0[i], ax1[j], ax2[k]};
                        memcpy(cursor[c], p, 24);
                        cursor[c] += 24;
                    }
                }
    } else
    for (Py_ssize_t i = 0, n0 = 0; i < v.X && !bad; i++)
        for (Py_ssize_t j = 0; j < v.Y && !bad; j++, n0 += v.Z) {
            const Py_ssize_t m = row_occupied(&v, n0, ks);
            for (Py_ssize_t r = 0; r < m; r++) {
                const Py_ssize_t k = ks[r], n = n0 + k;
                const uint8_t c = v.lab[n];
                if (cursor[c] == stop[c]) { /* undeclared class, or more cubes than counted */
                    bad = 1;
                    break;
                }
                const double p[3] = {ax0[i], ax1[j], ax2[k]};
                memcpy(cursor[c], p, 24);
                cursor[c] += 24;
            }
        }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(ks);
    for (int c = 0; c < 256 && !bad; c++) bad = cursor[c] != stop[c];
    if (bad == 2) {
        PyErr_SetString(PyExc_ValueError, "mask: names a voxel outside the rows or not occupied (not count's mask)");
        goto fail;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "parts: the marker slots do not match the occupied voxels per class");
        goto fail;
    }
    Py_DECREF(seq);
    release_all(&b);
    return L.out;
fail:
    Py_XDECREF(seq);
    release_all(&b);
    Py_XDECREF(L.out);
    return NULL;
}

/* ------------------------------------------------------------------------- SemanticVoxelGrid */
PyDoc_STRVAR(grid_doc,
             "grid(parts, labels, dims, confidence, threshold) -> bytes\n\n"
             "SemanticVoxelGrid with its slots filled: slot 0 the labels (255 where confidence < threshold),\n"
             "slot 1 (when present) the confidence as uint8 rint(255 c) clipped to 0..255 in float32.");

static PyObject *py_grid(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *parts, *labels, *dims, *conf;
    double threshold;
    if (!PyArg_ParseTuple(args, "OOOOd", &parts, &labels, &dims, &conf, &threshold)) return NULL;
    Buffers b = {.n = 0};
    Volume v;
    Layout L = {.out = NULL};
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0) goto fail;
    const Py_ssize_t n_all = v.X * v.Y * v.Z;
    if (layout(&L, parts) < 0) goto fail;
    if (L.nslots < 1 || L.nslots > 2 || L.size[0] != n_all || (L.nslots == 2 && (L.size[1] != n_all || !v.conf))) {
        PyErr_SetString(PyExc_ValueError, "parts: expected a labels slot (and a confidence slot) of the grid's size");
        goto fail;
    }
    /* locals, restrict: byte stores may alias anything, which would reload v's fields per voxel */
    uint8_t *restrict lab = (uint8_t *)L.slot[0], *restrict q = L.nslots == 2 ? (uint8_t *)L.slot[1] : NULL;
    const uint8_t *restrict src = v.lab;
    const float *restrict cf = v.conf;
    const float thr = v.thr;
    Py_BEGIN_ALLOW_THREADS
    if (v.use_thr) {
        /* 255 below the threshold, branch-free so that it vectorises (NaN: kept, as NumPy's where) */
        for (Py_ssize_t n = 0; n < n_all; n++) lab[n] = src[n] | (uint8_t)-(uint8_t)(cf[n] < thr);
    } else {
        memcpy(lab, src, (size_t)n_all);
    }
    if (q) {
        /* np.rint of the float32 product, clipped to 0..255 (negative and NaN: 0). Adding 2^23
         * to a float32 in [0, 256) rounds it to an integer, ties to even as rint does, and leaves
         * that integer in the low mantissa bits: no call to rintf, no float -> int conversion,
         * so the loop vectorises on any x86-64 / aarch64 baseline. */
        const float big = 8388608.0f;
        for (Py_ssize_t n = 0; n < n_all; n++) {
            const float x = cf[n] * 255.0f;
            uint32_t xb, bits;
            memcpy(&xb, &x, 4);
            /* clip with masks (a comparison gives all ones or zeros), not branches */
            const uint32_t pos = -(uint32_t)(x >= 0.0f), small = -(uint32_t)(x < 255.0f);
            const uint32_t cb = ((xb & small) | (0x437F0000u /* 255.0f */ & ~small)) & pos;
            float r;
            memcpy(&r, &cb, 4);
            r += big;
            memcpy(&bits, &r, 4);
            q[n] = (uint8_t)bits;
        }
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    return L.out;
fail:
    release_all(&b);
    Py_XDECREF(L.out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"count", py_count, METH_VARARGS, count_doc},
    {"occupied", py_occupied, METH_VARARGS, occupied_doc},
    {"points", py_points, METH_VARARGS, points_doc},
    {"markers", py_markers, METH_VARARGS, markers_doc},
    {"grid", py_grid, METH_VARARGS, grid_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cdr_fill",
    "Fused per-voxel kernels of sgn_ros.ros.wire (serialized outputs written in place).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cdr_fill(void) { return PyModule_Create(&module); }
