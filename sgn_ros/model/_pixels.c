/*
 * sgn_ros.model._pixels: camera pixels -> the network's normalised input in one pass.
 *
 * Why native: on the CPU, (x / 255 - mean) / std of a KITTI image is four passes of torch over a
 * 5.4 MB float32 image (convert, divide, subtract, divide). Right after a network forward, with
 * the caches full of the network's tensors, those passes cost 2-3.5 ms of the node's per-frame
 * budget. The result of those float32 operations depends on the pixel's byte value and channel
 * only, so a 3 x 256 table of them (made by the same torch operations, see
 * sgn_ros.model.preprocessing) gives every output value bit for bit: one read of the uint8 pixels
 * and one write of the floats, channel-first, with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

PyDoc_STRVAR(normalize_doc,
             "normalize(image, table, out) -> None\n\n"
             "out[c, y, x] = table[c, image[y, x, c]] for the image's (H, W) pixels: image uint8 (H, W, 3)\n"
             "of any strides, table float32 (3, 256) C-contiguous, out float32 (3, >=H, >=W) writable with\n"
             "contiguous rows. The rest of out is left as it is.");

static int bad(const char *what, const char *expected, const Py_buffer *v) {
    PyErr_Format(PyExc_ValueError, "%s: expected %s, got %d-d of format '%s' (item size %zd)", what, expected,
                 v->ndim, v->format ? v->format : "B", v->itemsize);
    return -1;
}

static int format_is(const Py_buffer *v, char code) {
    const char *f = v->format ? v->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return f[0] == code && f[1] == '\0';
}

static PyObject *py_normalize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *image_obj, *table_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO", &image_obj, &table_obj, &out_obj)) return NULL;
    Py_buffer img = {0}, tab = {0}, out = {0};
    int have_img = 0, have_tab = 0, have_out = 0, err = -1;
    if (PyObject_GetBuffer(image_obj, &img, PyBUF_RECORDS_RO) < 0) goto done;
    have_img = 1;
    if (PyObject_GetBuffer(table_obj, &tab, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have_tab = 1;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_RECORDS) < 0) goto done;
    have_out = 1;
    if (img.ndim != 3 || img.itemsize != 1 || !format_is(&img, 'B') || img.shape[2] != 3) {
        bad("image", "uint8 (H, W, 3)", &img);
        goto done;
    }
    if (tab.itemsize != 4 || !format_is(&tab, 'f') || tab.len != 3 * 256 * 4) {
        bad("table", "float32 (3, 256)", &tab);
        goto done;
    }
    const Py_ssize_t H = img.shape[0], W = img.shape[1];
    if (out.ndim != 3 || out.itemsize != 4 || !format_is(&out, 'f') || out.shape[0] != 3 || out.shape[1] < H ||
        out.shape[2] < W || out.strides[2] != 4) {
        bad("out", "float32 (3, >=H, >=W) with contiguous rows", &out);
        goto done;
    }
    const float *lut = tab.buf;
    const char *src = img.buf;
    char *dst = out.buf;
    const Py_ssize_t sy = img.strides[0], sx = img.strides[1], sc = img.strides[2];
    const Py_ssize_t oc = out.strides[0], oy = out.strides[1];
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < H; y++) {
        const char *row = src + y * sy;
        float *restrict r0 = (float *)(dst + y * oy), *restrict r1 = (float *)(dst + oc + y * oy),
                        *restrict r2 = (float *)(dst + 2 * oc + y * oy);
        for (Py_ssize_t x = 0; x < W; x++) {
            const uint8_t *p = (const uint8_t *)(row + x * sx);
            r0[x] = lut[p[0]];
            r1[x] = lut[256 + p[sc]];
            r2[x] = lut[512 + p[2 * sc]];
        }
    }
    Py_END_ALLOW_THREADS
    err = 0;
done:
    if (have_out) PyBuffer_Release(&out);
    if (have_tab) PyBuffer_Release(&tab);
    if (have_img) PyBuffer_Release(&img);
    if (err) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"normalize", py_normalize, METH_VARARGS, normalize_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pixels", "Camera pixels -> normalised network input in one pass (a per-channel table).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pixels(void) { return PyModule_Create(&module); }
