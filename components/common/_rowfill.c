/* protolayout's native fill: TFRecord-framed rows written in their order from per-group templates, CRCs in place.
 *
 * fill(out, group_of_row, templates, group_parts, sources[, write]) -> None
 *   out           writable bytes-like, exactly the rows' total size; with ``write``, a scratch buffer at least as
 *                 large as the largest row: filled with whole rows and handed to ``write`` (a memoryview it must
 *                 take before returning, as a file's write does), again and again until every row is written
 *   group_of_row  int32 buffer, one group index per row (its length is the row count)
 *   templates     per group, a framed row (bytes): length, its masked CRC, the record with zeros where rows
 *                 differ, 4 bytes for the record's CRC
 *   group_parts   per group, a sequence of (start, width, source) where a row's own bytes go
 *   sources       per varying part, (kind, data, index, stride): kind 0, row i at data[i * stride]; kind 1, row i
 *                 at data[index[i]]; kind 2, row i at data[index[i] * stride] (index: int64 buffers)
 * Every read is bounds-checked (ValueError); the loop runs without the GIL. The record CRC is CRC32C (SSE4.2's
 * instruction where the CPU has it, three records at a time, else slicing-by-8), masked as TFRecord masks it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_SSE42_PATH 1
#endif

static uint32_t crc_table[8][256];
static int use_hardware = 0;

static void init_crc_tables(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        crc_table[0][byte] = crc;
    }
    for (uint32_t byte = 0; byte < 256; byte++)
        for (int k = 1; k < 8; k++)
            crc_table[k][byte] = (crc_table[k - 1][byte] >> 8) ^ crc_table[0][crc_table[k - 1][byte] & 0xFF];
}

static uint32_t crc32c_software(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc; /* little-endian: the low 4 bytes meet the register */
        crc = crc_table[7][word & 0xFF] ^ crc_table[6][(word >> 8) & 0xFF] ^ crc_table[5][(word >> 16) & 0xFF] ^
              crc_table[4][(word >> 24) & 0xFF] ^ crc_table[3][(word >> 32) & 0xFF] ^
              crc_table[2][(word >> 40) & 0xFF] ^ crc_table[1][(word >> 48) & 0xFF] ^ crc_table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return crc ^ 0xFFFFFFFFu;
}

#ifdef HAVE_SSE42_PATH
/* The CRC32C register ``crc`` (not yet inverted at the end) run over n bytes. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hardware_run(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t wide = crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        wide = _mm_crc32_u64(wide, word);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)wide;
    while (n--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hardware(const uint8_t *p, size_t n) {
    return crc32c_hardware_run(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

/* Three records' CRC32Cs at once: the instruction's latency is three times its throughput, so three independent
 * chains run in the time of one (a record of a few hundred bytes is one short chain). */
__attribute__((target("sse4.2"))) static void crc32c_hardware3(const uint8_t *const p[3], const size_t n[3],
                                                              uint32_t out[3]) {
    uint64_t a = 0xFFFFFFFFu, b = 0xFFFFFFFFu, c = 0xFFFFFFFFu;
    size_t common = n[0] < n[1] ? n[0] : n[1];
    common = (common < n[2] ? common : n[2]) & ~(size_t)7;
    for (size_t i = 0; i < common; i += 8) {
        uint64_t x, y, z;
        memcpy(&x, p[0] + i, 8);
        memcpy(&y, p[1] + i, 8);
        memcpy(&z, p[2] + i, 8);
        a = _mm_crc32_u64(a, x);
        b = _mm_crc32_u64(b, y);
        c = _mm_crc32_u64(c, z);
    }
    out[0] = crc32c_hardware_run((uint32_t)a, p[0] + common, n[0] - common) ^ 0xFFFFFFFFu;
    out[1] = crc32c_hardware_run((uint32_t)b, p[1] + common, n[1] - common) ^ 0xFFFFFFFFu;
    out[2] = crc32c_hardware_run((uint32_t)c, p[2] + common, n[2] - common) ^ 0xFFFFFFFFu;
}
#endif

static uint32_t crc32c(const uint8_t *p, size_t n) {
#ifdef HAVE_SSE42_PATH
    if (use_hardware) return crc32c_hardware(p, n);
#endif
    return crc32c_software(p, n);
}

static uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

/* The masked CRC of each framed row (12 bytes of length and its CRC, the record, 4 bytes for the record's CRC)
 * written into its last 4 bytes; ``count`` rows of 1-3, three at once on the hardware path. */
static void put_record_crcs(uint8_t *const rows[3], const size_t sizes[3], int count) {
    uint32_t crcs[3];
#ifdef HAVE_SSE42_PATH
    if (use_hardware && count == 3) {
        const uint8_t *records[3] = {rows[0] + 12, rows[1] + 12, rows[2] + 12};
        const size_t lengths[3] = {sizes[0] - 16, sizes[1] - 16, sizes[2] - 16};
        crc32c_hardware3(records, lengths, crcs);
    } else
#endif
        for (int k = 0; k < count; k++) crcs[k] = crc32c(rows[k] + 12, sizes[k] - 16);
    for (int k = 0; k < count; k++) {
        uint32_t crc = masked(crcs[k]);
        memcpy(rows[k] + sizes[k] - 4, &crc, 4); /* x86/ARM: little-endian, as TFRecord writes it */
    }
}

typedef struct {
    int kind;
    Py_buffer data, index;
    int has_data, has_index;
    Py_ssize_t stride;
} Source;

typedef struct {
    Py_ssize_t start, width, source;
} Part;

typedef struct {
    const uint8_t *bytes;
    Py_ssize_t size, n_parts;
    Part *parts;
} Group;

static int is_int64(const Py_buffer *view) {
    const char *format = view->format ? view->format : "B";
    if (*format == '<' || *format == '=' || *format == '@') format++;
    return view->itemsize == 8 && (strcmp(format, "q") == 0 || strcmp(format, "l") == 0);
}

static int parse_sources(PyObject *seq, Source **out, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(seq, "sources: expected a sequence");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Source *sources = PyMem_Calloc(n ? n : 1, sizeof(Source));
    if (!sources) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    *out = sources;
    *count = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i), *data, *index;
        Source *s = &sources[i];
        if (!PyArg_ParseTuple(item, "iOOn", &s->kind, &data, &index, &s->stride)) { Py_DECREF(fast); return -1; }
        if (s->kind < 0 || s->kind > 2 || s->stride < 0) {
            PyErr_Format(PyExc_ValueError, "source %zd: bad kind or stride", i);
            Py_DECREF(fast);
            return -1;
        }
        if (PyObject_GetBuffer(data, &s->data, PyBUF_C_CONTIGUOUS) < 0) { Py_DECREF(fast); return -1; }
        s->has_data = 1;
        if (s->kind != 0) {
            if (PyObject_GetBuffer(index, &s->index, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
                Py_DECREF(fast);
                return -1;
            }
            s->has_index = 1;
            if (!is_int64(&s->index)) {
                PyErr_Format(PyExc_ValueError, "source %zd: the row index must be int64", i);
                Py_DECREF(fast);
                return -1;
            }
        }
    }
    Py_DECREF(fast);
    return 0;
}

static int parse_groups(PyObject *templates, PyObject *group_parts, Py_ssize_t n_sources, PyObject **keep,
                        Group **out, Py_ssize_t *count) {
    PyObject *tfast = PySequence_Fast(templates, "templates: expected a sequence");
    if (!tfast) return -1;
    *keep = tfast;
    PyObject *pfast = PySequence_Fast(group_parts, "group_parts: expected a sequence");
    if (!pfast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(tfast);
    if (PySequence_Fast_GET_SIZE(pfast) != n) {
        Py_DECREF(pfast);
        PyErr_SetString(PyExc_ValueError, "templates and group_parts differ in length");
        return -1;
    }
    Group *groups = PyMem_Calloc(n ? n : 1, sizeof(Group));
    if (!groups) { Py_DECREF(pfast); PyErr_NoMemory(); return -1; }
    *out = groups;
    *count = n;
    for (Py_ssize_t g = 0; g < n; g++) {
        PyObject *template = PySequence_Fast_GET_ITEM(tfast, g);
        if (!PyBytes_Check(template) || PyBytes_GET_SIZE(template) < 16) {
            Py_DECREF(pfast);
            PyErr_Format(PyExc_ValueError, "template %zd: expected bytes of a framed row", g);
            return -1;
        }
        groups[g].bytes = (const uint8_t *)PyBytes_AS_STRING(template);
        groups[g].size = PyBytes_GET_SIZE(template);
        PyObject *parts = PySequence_Fast(PySequence_Fast_GET_ITEM(pfast, g), "group parts: expected a sequence");
        if (!parts) { Py_DECREF(pfast); return -1; }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(parts);
        groups[g].n_parts = m;
        groups[g].parts = PyMem_Calloc(m ? m : 1, sizeof(Part));
        if (!groups[g].parts) { Py_DECREF(parts); Py_DECREF(pfast); PyErr_NoMemory(); return -1; }
        for (Py_ssize_t k = 0; k < m; k++) {
            Part *part = &groups[g].parts[k];
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(parts, k), "nnn", &part->start, &part->width,
                                  &part->source)) {
                Py_DECREF(parts);
                Py_DECREF(pfast);
                return -1;
            }
            if (part->start < 12 || part->width < 0 || part->start + part->width > groups[g].size - 4 ||
                part->source < 0 || part->source >= n_sources) {
                Py_DECREF(parts);
                Py_DECREF(pfast);
                PyErr_Format(PyExc_ValueError, "group %zd part %zd: outside the record", g, k);
                return -1;
            }
        }
        Py_DECREF(parts);
    }
    Py_DECREF(pfast);
    return 0;
}

/* The source bytes of ``row`` for a part of ``width`` bytes, or NULL when they lie outside the source. */
static const uint8_t *source_row(const Source *s, Py_ssize_t row, Py_ssize_t width) {
    Py_ssize_t at;
    if (s->kind == 0) {
        at = row * s->stride;
    } else {
        if ((row + 1) * (Py_ssize_t)sizeof(int64_t) > s->index.len) return NULL;
        int64_t index = ((const int64_t *)s->index.buf)[row];
        if (index < 0) return NULL;
        if (index > s->data.len || (s->kind == 2 && s->stride && index > s->data.len / s->stride)) return NULL;
        at = s->kind == 1 ? (Py_ssize_t)index : (Py_ssize_t)index * s->stride;
    }
    if (at < 0 || at + width > s->data.len) return NULL;
    return (const uint8_t *)s->data.buf + at;
}

/* Rows from ``*row_io`` on written at ``out``: all of them, or (``chunked``) as many as fit in ``room``; returns the
 * bytes written, advances ``*row_io`` past them and sets ``*failure`` on a bad row. Runs without the GIL. */
static Py_ssize_t write_rows(uint8_t *out, Py_ssize_t room, Py_ssize_t *row_io, Py_ssize_t n, const int32_t *group_ids,
                             const Group *groups, Py_ssize_t n_groups, const Source *sources, int chunked,
                             const char **failure) {
    uint8_t *position = out, *end = out + room;
    uint8_t *pending[3];
    size_t pending_sizes[3];
    int n_pending = 0;
    Py_ssize_t row = *row_io;
    for (; row < n && !*failure; row++) {
        int32_t id = group_ids[row];
        if (id < 0 || id >= n_groups) { *failure = "a row's group is out of range"; break; }
        const Group *group = &groups[id];
        if (end - position < group->size) {
            if (!chunked || position == out) *failure = "the output is smaller than the rows";
            break;
        }
        memcpy(position, group->bytes, group->size);
        for (Py_ssize_t k = 0; k < group->n_parts; k++) {
            const Part *part = &group->parts[k];
            const uint8_t *from = source_row(&sources[part->source], row, part->width);
            if (!from) { *failure = "a row's bytes lie outside its source"; break; }
            memcpy(position + part->start, from, part->width);
        }
        if (*failure) break;
        pending[n_pending] = position;
        pending_sizes[n_pending++] = (size_t)group->size;
        if (n_pending == 3) {
            put_record_crcs(pending, pending_sizes, 3);
            n_pending = 0;
        }
        position += group->size;
    }
    if (n_pending) put_record_crcs(pending, pending_sizes, n_pending);
    *row_io = row;
    return position - out;
}

static PyObject *fill(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *out_obj, *groups_obj, *templates, *group_parts, *sources_obj, *write = Py_None, *keep = NULL;
    if (!PyArg_ParseTuple(args, "OOOOO|O", &out_obj, &groups_obj, &templates, &group_parts, &sources_obj, &write))
        return NULL;
    Py_buffer out = {0}, group_of_row = {0};
    Source *sources = NULL;
    Group *groups = NULL;
    Py_ssize_t n_sources = 0, n_groups = 0;
    PyObject *result = NULL;
    const char *failure = NULL;
    Py_ssize_t row = 0, written = 0;

    if (write != Py_None && !PyCallable_Check(write)) {
        PyErr_SetString(PyExc_TypeError, "write: expected a callable");
        return NULL;
    }
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(groups_obj, &group_of_row, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    const char *format = group_of_row.format ? group_of_row.format : "B";
    if (group_of_row.itemsize != 4 || !strchr("il", format[strlen(format) - 1])) {
        PyErr_SetString(PyExc_ValueError, "group_of_row must be int32");
        goto done;
    }
    if (parse_sources(sources_obj, &sources, &n_sources) < 0) goto done;
    if (parse_groups(templates, group_parts, n_sources, &keep, &groups, &n_groups) < 0) goto done;

    Py_ssize_t n = group_of_row.len / (Py_ssize_t)sizeof(int32_t);
    const int32_t *group_ids = group_of_row.buf;
    if (write == Py_None) {
        Py_BEGIN_ALLOW_THREADS
        written = write_rows(out.buf, out.len, &row, n, group_ids, groups, n_groups, sources, 0, &failure);
        Py_END_ALLOW_THREADS
        if (!failure && written != out.len) failure = "the output is larger than the rows";
    } else {
        /* ``out`` is a scratch buffer: filled with whole rows, handed to ``write`` (which must take the bytes before
         * it returns, as a file's write does), filled again: the rows stay in the cache for the compressor. */
        while (row < n && !failure) {
            Py_BEGIN_ALLOW_THREADS
            written = write_rows(out.buf, out.len, &row, n, group_ids, groups, n_groups, sources, 1, &failure);
            Py_END_ALLOW_THREADS
            if (failure) break;
            PyObject *view = PyMemoryView_FromMemory(out.buf, written, PyBUF_READ);
            if (!view) goto done;
            PyObject *answer = PyObject_CallOneArg(write, view);
            Py_DECREF(view);
            if (!answer) goto done;
            Py_DECREF(answer);
        }
    }
    if (failure) {
        PyErr_Format(PyExc_ValueError, "%s (row %zd)", failure, row);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (groups) {
        for (Py_ssize_t g = 0; g < n_groups; g++) PyMem_Free(groups[g].parts);
        PyMem_Free(groups);
    }
    if (sources) {
        for (Py_ssize_t i = 0; i < n_sources; i++) {
            if (sources[i].has_data) PyBuffer_Release(&sources[i].data);
            if (sources[i].has_index) PyBuffer_Release(&sources[i].index);
        }
        PyMem_Free(sources);
    }
    Py_XDECREF(keep);
    if (group_of_row.obj) PyBuffer_Release(&group_of_row);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *crc32c_py(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    uint32_t crc = crc32c(data.buf, data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *set_hardware(PyObject *self, PyObject *arg) {
    (void)self;
    int wanted = PyObject_IsTrue(arg);
    if (wanted < 0) return NULL;
#ifdef HAVE_SSE42_PATH
    use_hardware = wanted && __builtin_cpu_supports("sse4.2");
#else
    use_hardware = 0;
#endif
    return PyBool_FromLong(use_hardware);
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "Framed rows from per-group templates and their varying parts, in row order "
                                 "(into one buffer, or in chunks to a write callable)."},
    {"crc32c", crc32c_py, METH_O, "CRC32C of a bytes-like object (unmasked)."},
    {"set_hardware", set_hardware, METH_O, "Use SSE4.2's CRC32C where the CPU has it (True) or the table; "
                                           "returns whether the instruction is used."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowfill", "protolayout's native fill.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowfill(void) {
    init_crc_tables();
#ifdef HAVE_SSE42_PATH
    __builtin_cpu_init();
    use_hardware = __builtin_cpu_supports("sse4.2");
#endif
    return PyModule_Create(&module);
}
