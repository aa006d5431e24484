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
#ifdef __SSE2__
#include <emmintrin.h> /* x86-64 always has SSE2: 16 labels per compare in the merged markers' pass */
#endif

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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
#define WORDS_LE 1 /* eight labels as one little-endian 64-bit word */
/* 0x80 in each byte of w that is 0 (exact: no carries between bytes) */
static inline uint64_t zero_bytes(uint64_t w) {
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL;
    return ~(((w & low7) + low7) | w) & 0x8080808080808080ULL;
}
/* 0x80 in each byte of w that is an occupied label: not 0 (empty), not 255 (no prediction) */
static inline uint64_t occupied_flags(uint64_t w) {
    return 0x8080808080808080ULL & ~(zero_bytes(w) | zero_bytes(~w));
}
/* 0x80 flags of the eight bytes -> bits 0..7 (byte b -> bit b): one multiply, no carries */
static inline uint64_t gather_flags(uint64_t m) { return ((m >> 7) * 0x0102040810204080ULL) >> 56; }
#endif

/* The occupied voxels of one row of the volume (the Z voxels from n0 on): their k, in order,
 * into ks; returns how many. Eight labels at a time as one 64-bit word: an all-air word (the
 * most common by far) is one test, and in a mixed word the occupied bytes (not 0, not 255) are
 * found with exact byte-wise bit tricks, so there is no branch per voxel to mispredict. */
static inline Py_ssize_t row_occupied(const Volume *v, Py_ssize_t n0, int32_t *ks) {
    const uint8_t *row = v->lab + n0;
    Py_ssize_t cnt = 0, k = 0;
#ifdef WORDS_LE
    for (; k + 8 <= v->Z; k += 8) {
        uint64_t w;
        memcpy(&w, row + k, 8);
        if (!w) continue;
        for (uint64_t m = occupied_flags(w); m; m &= m - 1) {
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
/* slots per message: the merged markers have one per class and box size (<= 256 * levels) */
#define MAX_SLOTS 2048

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

/* count's surface bit mask of the volume v (mask_words_per_row(Z) words per row), or NULL with
 * None; -1 (an exception set) when it is not of the volume's size. */
static int get_mask(Buffers *b, const Volume *v, PyObject *mask_obj, const uint64_t **mask) {
    *mask = NULL;
    if (mask_obj == Py_None) return 0;
    *mask = get_array(b, mask_obj, "B", 1, v->X * v->Y * mask_words_per_row(v->Z) * 8, "mask");
    return *mask ? 0 : -1;
}

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
#ifdef WORDS_LE
    if (!v.use_thr) { /* the whole volume as words, whatever the rows */
        Py_ssize_t n = 0;
        for (; n + 8 <= n_all; n += 8) {
            uint64_t w;
            memcpy(&w, v.lab + n, 8);
            /* at most one bit per byte (bit 7): summing the bytes is the population count, two
             * instructions instead of the libgcc call __builtin_popcountll makes without -mpopcnt */
            total += (Py_ssize_t)(((occupied_flags(w) >> 7) * 0x0101010101010101ULL) >> 56);
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
    if (get_mask(&b, &v, mask_obj, &mask) < 0) goto fail;
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

/* ------------------------------------------------------------------------- merged boxes */

/* Bits of the voxels k0 .. k1 - 1 (k1 - k0 <= 64) of the row at n0: occupied (bit k - k0). */
static inline uint64_t occupied_bits(const Volume *v, Py_ssize_t n0, Py_ssize_t k0, Py_ssize_t k1) {
    uint64_t bits = 0;
    Py_ssize_t k = k0;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128(), full = _mm_set1_epi8((char)0xFF);
    for (; k + 16 <= k1; k += 16) {
        const __m128i l = _mm_loadu_si128((const __m128i *)(v->lab + n0 + k));
        const __m128i none = _mm_or_si128(_mm_cmpeq_epi8(l, zero), _mm_cmpeq_epi8(l, full));
        bits |= (uint64_t)(~_mm_movemask_epi8(none) & 0xFFFF) << (k - k0);
    }
#endif
#ifdef WORDS_LE
    for (; k + 8 <= k1; k += 8) {
        uint64_t w;
        memcpy(&w, v->lab + n0 + k, 8);
        if (w) bits |= gather_flags(occupied_flags(w)) << (k - k0);
    }
#endif
    for (; k < k1; k++) bits |= (uint64_t)((uint8_t)(v->lab[n0 + k] - 1) < 254) << (k - k0);
    if (v->use_thr) /* at or above the threshold (NaN: not) */
        for (uint64_t m = bits; m; m &= m - 1) {
            const int t = __builtin_ctzll(m);
            if (!(v->conf[n0 + k0 + t] >= v->thr)) bits &= ~(1ULL << t);
        }
    return bits;
}

/* Bits of the voxels k0 .. k1 - 1 whose labels are equal in the rows at n0 and n1. */
static inline uint64_t equal_bits(const uint8_t *lab, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k0, Py_ssize_t k1) {
    uint64_t bits = 0;
    Py_ssize_t k = k0;
#ifdef __SSE2__
    for (; k + 16 <= k1; k += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(lab + n0 + k));
        const __m128i b = _mm_loadu_si128((const __m128i *)(lab + n1 + k));
        bits |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) << (k - k0);
    }
#endif
#ifdef WORDS_LE
    for (; k + 8 <= k1; k += 8) {
        uint64_t a, b;
        memcpy(&a, lab + n0 + k, 8);
        memcpy(&b, lab + n1 + k, 8);
        bits |= gather_flags(zero_bytes(a ^ b)) << (k - k0);
    }
#endif
    for (; k < k1; k++) bits |= (uint64_t)(lab[n0 + k] == lab[n1 + k]) << (k - k0);
    return bits;
}

static int check_levels(const Volume *v, Py_ssize_t levels) {
    Py_ssize_t need = 0;
    for (Py_ssize_t x = v->X; x; x >>= 1) need++;
    if (levels < need || levels > 62) {
        PyErr_Format(PyExc_ValueError, "levels: expected %zd..62 box sizes for %zd voxels along axis 0, got %zd",
                     need, v->X, levels);
        return -1;
    }
    return 0;
}

/* The runs found so far and the boxes they make per class and size. */
typedef struct {
    int32_t *runs; /* (first flat index, length) pairs */
    Py_ssize_t n, cap, levels;
    Py_ssize_t *counts; /* 256 * levels */
} Runs;

static inline int add_run(Runs *R, const uint8_t *lab, Py_ssize_t first, Py_ssize_t len) {
    if (R->n == R->cap) {
        int32_t *more = PyMem_RawRealloc(R->runs, sizeof(int32_t) * 4 * (size_t)R->cap);
        if (!more) return -1;
        R->runs = more;
        R->cap *= 2;
    }
    R->runs[2 * R->n] = (int32_t)first;
    R->runs[2 * R->n + 1] = (int32_t)len;
    R->n++;
    Py_ssize_t *per_size = R->counts + (Py_ssize_t)lab[first] * R->levels;
    for (Py_ssize_t s = 0; len >> s; s++) per_size[s] += (len >> s) & 1;
    return 0;
}

PyDoc_STRVAR(box_count_doc,
             "box_count(labels, dims, confidence, threshold, mask, levels) -> (counts, runs)\n\n"
             "The runs of the merged markers: maximal lines of drawn voxels (i..i+L-1, j, k) of one class\n"
             "along axis 0, the drawn voxels being those of `mask` (count's surface bits) or, with mask\n"
             "None, the occupied ones. counts: per class c and box size 2^b (entry c * levels + b,\n"
             "256 * levels ints) how many boxes, a run giving one per binary digit of L; runs: per run\n"
             "the flat index of its first voxel and L, int32 pairs, in the C order of the runs' LAST\n"
             "voxels (what `boxes` then fills the markers from).\n\n"
             "One pass over the rows, 64 voxels of a row at a time as bits: drawn here, drawn in the row\n"
             "before on axis 0, and the same label there (16 labels per SSE2 compare, else 8 per word). A voxel that is\n"
             "drawn and not continuing the run before it opens a run; a run ends where the next row on\n"
             "axis 0 does not continue it, and is counted then.");

static PyObject *py_box_count(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *labels, *dims, *conf, *mask_obj;
    double threshold;
    Py_ssize_t levels;
    if (!PyArg_ParseTuple(args, "OOOdOn", &labels, &dims, &conf, &threshold, &mask_obj, &levels)) return NULL;
    Buffers b = {.n = 0};
    Volume v;
    const uint64_t *mask;
    if (get_volume(&b, &v, labels, dims, conf, threshold) < 0 || get_mask(&b, &v, mask_obj, &mask) < 0 ||
        check_levels(&v, levels) < 0) {
        release_all(&b);
        return NULL;
    }
    if (v.X * v.Y * v.Z > INT32_MAX) {
        release_all(&b);
        PyErr_SetString(PyExc_ValueError, "dims: more voxels than int32 run indices hold");
        return NULL;
    }
    const Py_ssize_t Y = v.Y, Z = v.Z, yz = Y * Z, wpr = mask_words_per_row(Z), rowbits = Y * wpr;
    Runs R = {.n = 0, .cap = 4096, .levels = levels};
    R.counts = PyMem_RawCalloc((size_t)(256 * levels), sizeof(Py_ssize_t));
    R.runs = PyMem_RawMalloc(sizeof(int32_t) * 2 * (size_t)R.cap);
    int32_t *start = PyMem_RawMalloc(sizeof(int32_t) * (size_t)yz); /* first i of each column's open run */
    uint64_t *prev = PyMem_RawCalloc((size_t)rowbits, 8), *cur = PyMem_RawMalloc(8 * (size_t)rowbits);
    int bad = 0;
    if (!R.counts || !R.runs || !start || !prev || !cur) {
        bad = 3;
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < v.X && !bad; i++) {
        for (Py_ssize_t j = 0; j < Y && !bad; j++) {
            const Py_ssize_t n0 = (i * Y + j) * Z;
            for (Py_ssize_t w = 0; w < wpr; w++) {
                const Py_ssize_t k0 = 64 * w, k1 = k0 + 64 < Z ? k0 + 64 : Z;
                uint64_t d;
                if (mask) { /* count's surface bits: each one on an occupied voxel of the row */
                    memcpy(&d, mask + (i * Y + j) * wpr + w, 8);
                    if (d && (d & ~occupied_bits(&v, n0, k0, k1))) {
                        bad = 2;
                        break;
                    }
                } else {
                    d = occupied_bits(&v, n0, k0, k1);
                }
                const uint64_t p = prev[j * wpr + w];
                const uint64_t c = (d & p) ? d & p & equal_bits(v.lab, n0, n0 - yz, k0, k1) : 0;
                for (uint64_t m = p & ~c; m; m &= m - 1) { /* runs that ended in the row before */
                    const Py_ssize_t k = k0 + __builtin_ctzll(m), first = (start[j * Z + k] * Y + j) * Z + k;
                    if (add_run(&R, v.lab, first, i - start[j * Z + k]) < 0) {
                        bad = 3;
                        break;
                    }
                }
                for (uint64_t m = d & ~c; m; m &= m - 1) start[j * Z + k0 + __builtin_ctzll(m)] = (int32_t)i;
                cur[j * wpr + w] = d;
            }
        }
        uint64_t *t = prev;
        prev = cur;
        cur = t;
    }
    for (Py_ssize_t j = 0; j < Y && !bad; j++) /* the runs that reach the grid's end */
        for (Py_ssize_t w = 0; w < wpr && !bad; w++)
            for (uint64_t m = prev[j * wpr + w]; m; m &= m - 1) {
                const Py_ssize_t k = 64 * w + __builtin_ctzll(m), first = (start[j * Z + k] * Y + j) * Z + k;
                if (add_run(&R, v.lab, first, v.X - start[j * Z + k]) < 0) {
                    bad = 3;
                    break;
                }
            }
    Py_END_ALLOW_THREADS
done:
    release_all(&b);
    PyMem_RawFree(start);
    PyMem_RawFree(prev);
    PyMem_RawFree(cur);
    PyObject *out = NULL, *list = NULL, *runs_bytes = NULL;
    if (bad == 2)
        PyErr_SetString(PyExc_ValueError, "mask: names a voxel outside the rows or not occupied (not count's mask)");
    else if (bad)
        PyErr_NoMemory();
    else if ((list = PyList_New(256 * levels)) &&
             (runs_bytes = PyBytes_FromStringAndSize((const char *)R.runs, (Py_ssize_t)(8 * R.n)))) {
        for (Py_ssize_t e = 0; e < 256 * levels; e++) PyList_SET_ITEM(list, e, PyLong_FromSsize_t(R.counts[e]));
        out = Py_BuildValue("NN", list, runs_bytes);
        list = runs_bytes = NULL;
    }
    Py_XDECREF(list);
    Py_XDECREF(runs_bytes);
    PyMem_RawFree(R.counts);
    PyMem_RawFree(R.runs);
    return out;
}

PyDoc_STRVAR(boxes_doc,
             "boxes(parts, keys, runs, labels, dims, xtable, ax1, ax2) -> bytes\n\n"
             "The merged MarkerArray with its slots filled: slot s holds the boxes of class keys[s] // levels\n"
             "and size 2^(keys[s] % levels) (levels = len(xtable) / X). Each run of `runs` (box_count's: the\n"
             "flat index of the first voxel (i, j, k) and the length L) is cut into boxes by the binary\n"
             "digits of L, the largest first, the box of 2^b voxels from voxel i' centred at\n"
             "(xtable[b * X + i'], ax1[j], ax2[k]) (float64), in the order of the runs.");

static PyObject *py_boxes(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *parts, *keys, *runs_obj, *labels, *dims, *xt_obj, *ax1_obj, *ax2_obj;
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &parts, &keys, &runs_obj, &labels, &dims, &xt_obj, &ax1_obj, &ax2_obj))
        return NULL;
    Buffers b = {.n = 0};
    Volume v;
    Layout L = {.out = NULL};
    PyObject *seq = NULL;
    char **cursor = NULL, **stop = NULL;
    if (get_volume(&b, &v, labels, dims, Py_None, 0.0) < 0) goto fail;
    Py_buffer *view = &b.views[b.n];
    const double *xt = get_array(&b, xt_obj, "d", 8, -1, "xtable");
    if (!xt) goto fail;
    const Py_ssize_t levels = view->len / 8 / v.X;
    if (view->len != levels * v.X * 8) {
        PyErr_SetString(PyExc_ValueError, "xtable: expected levels * X float64 values");
        goto fail;
    }
    if (check_levels(&v, levels) < 0) goto fail;
    const double *ax1 = get_array(&b, ax1_obj, "d", 8, v.Y, "ax1");
    const double *ax2 = ax1 ? get_array(&b, ax2_obj, "d", 8, v.Z, "ax2") : NULL;
    if (!ax2) goto fail;
    view = &b.views[b.n];
    const int32_t *runs = get_array(&b, runs_obj, "B", 1, -1, "runs");
    if (!runs) goto fail;
    if (view->len % 8) {
        PyErr_SetString(PyExc_ValueError, "runs: expected int32 pairs (box_count's)");
        goto fail;
    }
    const Py_ssize_t nruns = view->len / 8;
    if (layout(&L, parts) < 0) goto fail;
    seq = PySequence_Fast(keys, "keys: expected a list of class * levels + size");
    if (!seq) goto fail;
    if (PySequence_Fast_GET_SIZE(seq) != L.nslots) {
        PyErr_SetString(PyExc_ValueError, "keys: expected one key per slot");
        goto fail;
    }
    cursor = PyMem_Calloc((size_t)(256 * levels), sizeof(char *));
    stop = PyMem_Calloc((size_t)(256 * levels), sizeof(char *));
    if (!cursor || !stop) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int s = 0; s < L.nslots; s++) {
        const Py_ssize_t key = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, s));
        if (key < 0 || key >= 256 * levels || cursor[key] || L.size[s] % 24) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "keys: bad, repeated or misfit key slot");
            goto fail;
        }
        cursor[key] = L.slot[s];
        stop[key] = L.slot[s] + L.size[s];
    }
    int bad = 0;
    const Py_ssize_t yz = v.Y * v.Z;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < nruns && !bad; r++) {
        int32_t first, len;
        memcpy(&first, runs + 2 * r, 4);
        memcpy(&len, runs + 2 * r + 1, 4);
        const Py_ssize_t i = first / yz, j = first % yz / v.Z, k = first % v.Z;
        if (first < 0 || len < 1 || i + len > v.X) { /* not box_count's runs: never a write out of bounds */
            bad = 2;
            break;
        }
        const Py_ssize_t base = (Py_ssize_t)v.lab[first] * levels;
        Py_ssize_t off = 0; /* the boxes of the run from its first voxel, the largest first */
        for (Py_ssize_t s = levels - 1; s >= 0; s--) {
            if (!((len >> s) & 1)) continue;
            if (cursor[base + s] == stop[base + s]) { /* undeclared key, or more boxes than counted */
                bad = 1;
                break;
            }
            const double p[3] = {xt[s * v.X + i + off], ax1[j], ax2[k]};
            memcpy(cursor[base + s], p, 24);
            cursor[base + s] += 24;
            off += (Py_ssize_t)1 << s;
        }
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t e = 0; e < 256 * levels && !bad; e++) bad = cursor[e] != stop[e];
    if (bad) {
        PyErr_SetString(PyExc_ValueError, bad == 2 ? "runs: a run outside the grid (not box_count's runs)"
                                                   : "parts: the box slots do not match the runs per class and size");
        goto fail;
    }
    PyMem_Free(cursor);
    PyMem_Free(stop);
    Py_DECREF(seq);
    release_all(&b);
    return L.out;
fail:
    PyMem_Free(cursor);
    PyMem_Free(stop);
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
    {"box_count", py_box_count, METH_VARARGS, box_count_doc},
    {"boxes", py_boxes, METH_VARARGS, boxes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cdr_fill",
    "Fused per-voxel kernels of sgn_ros.ros.wire (serialized outputs written in place).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cdr_fill(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MAX_SLOTS", MAX_SLOTS) < 0) Py_CLEAR(m);
    return m;
}
