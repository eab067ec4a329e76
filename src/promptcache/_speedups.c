/* Native code of the warm path: fingerprints of JSON-like values (its "has this changed?"
 * check) and, at the end of this file, block digests (SHA-256).
 *
 * The pure-Python fallback (promptcache/fingerprint.py) compares value copies with
 * ==, which looks every dict key up by hash; here a value is recorded once as a flat
 * tuple in its own iteration order and later walked against that record with pointer
 * comparisons, so an unchanged 30-tool list is verified in a fraction of the time of
 * serializing it. The contract is the fallback's: same() is true only when the value
 * would serialize to the same JSON as when take() recorded it; a false "changed" is
 * allowed (key order, a list become a tuple), a false "same" never is.
 *
 * A record is a 3-tuple (flat, containers, tags):
 *  - flat: a dict is &PyDict_Type, its size, then key, value... in order; a list (a
 *    tuple) is &PyList_Type (&PyTuple_Type) and its size, then its items; a leaf (exact
 *    str, int, float, bool or None) is the object itself. Type objects are never leaves, so the markers cannot
 *    be confused with content. Walking a value against it proves equal JSON.
 *  - containers: every dict, list and tuple of the value, in the same order, each
 *    followed by the tuple of its items for a list or tuple (None for a dict); tags: on
 *    CPython 3.11 the dicts' version tags (bytes of uint64), on 3.12+ the watched-dict
 *    mutation count when the record was taken (a bytearray, renewed when a walk finds
 *    the same untouched objects). Frameworks pass the same tool and message dicts on
 *    every call: when every recorded container is still there and untouched and every
 *    list still holds the same item objects, nothing in the value can have changed,
 *    and no leaf needs to be looked at. The record holds references to all of them, so
 *    no address can be reused by another object while it lives.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than any real tool schema or message; also what stops a self-referencing list. */
#define MAX_DEPTH 128

/* How untouched dicts are recognized without reading them.
 * 3.11: PEP 509's version tag, which that version promises to change on every mutation.
 * 3.12+: PEP 699 withdrew that promise (the field is deprecated, then removed in 3.14), so
 * the dicts of a record are watched instead (PEP-less but public: PyDict_AddWatcher) and
 * one counter, bumped by any mutation of any watched dict, says whether all are untouched. */
#if PY_VERSION_HEX < 0x030C0000
#define DICT_TRUST_TAGS 1
static inline uint64_t
dict_version(PyObject *d)
{
    return ((PyDictObject *)d)->ma_version_tag;
}
#else
#define DICT_TRUST_TAGS 0
static int watcher = -1;
static uint64_t watched_epoch = 1;

static int
on_dict_event(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    /* A watched dict being freed is no mutation (and a record keeps its dicts alive). */
    if (event != PyDict_EVENT_DEALLOCATED) {
        watched_epoch++;
    }
    return 0;
}
#endif

/* A growable array of version tags, copied into the record's bytes at the end. */
typedef struct {
    uint64_t *v;
    Py_ssize_t n, cap;
} Tags;

#if DICT_TRUST_TAGS
static int
tags_push(Tags *t, uint64_t x)
{
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 64;
        uint64_t *v = PyMem_Realloc(t->v, (size_t)cap * sizeof *v);
        if (v == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = x;
    return 0;
}
#endif

typedef struct {
    PyObject *flat;  /* list */
    PyObject *conts; /* list */
    Tags tags;
    int unwatched; /* 3.12+: some dict could not be watched, so no fast path for this record */
} Taking;

static int
is_leaf_type(PyTypeObject *t)
{
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type ||
           t == Py_TYPE(Py_None);
}

/* 0: recorded, 1: not fingerprintable (caller returns None), -1: error set. */
static int
take_into(PyObject *v, Taking *tk, int depth)
{
    PyObject *out = tk->flat;
    PyTypeObject *t = Py_TYPE(v);
    if (is_leaf_type(t)) {
        return PyList_Append(out, v);
    }
    if (depth >= MAX_DEPTH) {
        return 1;
    }
    if (t == &PyDict_Type) {
        PyObject *n = PyLong_FromSsize_t(PyDict_GET_SIZE(v));
        if (n == NULL) {
            return -1;
        }
        if (PyList_Append(out, (PyObject *)&PyDict_Type) < 0 || PyList_Append(out, n) < 0) {
            Py_DECREF(n);
            return -1;
        }
        Py_DECREF(n);
        if (PyList_Append(tk->conts, v) < 0 || PyList_Append(tk->conts, Py_None) < 0) {
            return -1;
        }
#if DICT_TRUST_TAGS
        if (tags_push(&tk->tags, dict_version(v)) < 0) {
            return -1;
        }
#else
        if (watcher < 0 || PyDict_Watch(watcher, v) < 0) {
            PyErr_Clear(); /* e.g. imported in a subinterpreter: content walks only */
            tk->unwatched = 1;
        }
#endif
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (Py_TYPE(k) != &PyUnicode_Type) {
                return 1;
            }
            if (PyList_Append(out, k) < 0) {
                return -1;
            }
            int r = take_into(x, tk, depth + 1);
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        /* A tuple is written as a JSON array too; its own marker keeps it apart from a list. */
        Py_ssize_t size = Py_SIZE(v);
        PyObject *n = PyLong_FromSsize_t(size);
        if (n == NULL) {
            return -1;
        }
        if (PyList_Append(out, (PyObject *)t) < 0 || PyList_Append(out, n) < 0) {
            Py_DECREF(n);
            return -1;
        }
        Py_DECREF(n);
        /* A tuple's items never change: the tuple is its own record of them. */
        PyObject *items = t == &PyList_Type ? PyList_AsTuple(v) : Py_NewRef(v);
        if (items == NULL) {
            return -1;
        }
        if (PyList_Append(tk->conts, v) < 0 || PyList_Append(tk->conts, items) < 0) {
            Py_DECREF(items);
            return -1;
        }
        for (Py_ssize_t i = 0; i < size; i++) {
            int r = take_into(PyTuple_GET_ITEM(items, i), tk, depth + 1);
            if (r != 0) {
                Py_DECREF(items);
                return r;
            }
        }
        Py_DECREF(items);
        return 0;
    }
    return 1;
}

/* A record's container markers: pointer comparisons only, nothing of o is read. */
static inline int
is_marker(PyObject *o)
{
    return o == (PyObject *)&PyDict_Type || o == (PyObject *)&PyList_Type || o == (PyObject *)&PyTuple_Type;
}

static int
leaf_same(PyObject *v, PyObject *s)
{
    if (v == s) {
        return 1;
    }
    PyTypeObject *t = Py_TYPE(v);
    if (Py_TYPE(s) != t) {
        return 0;
    }
    if (t == &PyUnicode_Type) {
        /* Exact str on both sides: the comparison runs no Python code and cannot fail. */
        return PyUnicode_GET_LENGTH(v) == PyUnicode_GET_LENGTH(s) && PyUnicode_Compare(v, s) == 0;
    }
    if (t == &PyLong_Type) {
        return PyObject_RichCompareBool(v, s, Py_EQ) == 1;
    }
    if (t == &PyFloat_Type) {
        /* Bitwise: 0.0 and -0.0 compare equal but serialize differently. */
        double a = PyFloat_AS_DOUBLE(v), b = PyFloat_AS_DOUBLE(s);
        return memcmp(&a, &b, sizeof a) == 0;
    }
    return 0; /* bool and None are singletons: identity was the test */
}

/* The size recorded after a container marker (a forged record cannot raise here). */
static int
size_is(PyObject *o, Py_ssize_t size)
{
    if (!PyLong_CheckExact(o)) {
        return 0;
    }
    Py_ssize_t got = PyLong_AsSsize_t(o);
    if (got == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return got == size;
}

/* 1: v matches the record from items[*i]; 0: it does not (or cannot be checked). */
static int
same_at(PyObject *v, PyObject *const *items, Py_ssize_t n, Py_ssize_t *i, int depth)
{
    if (*i >= n) {
        return 0;
    }
    PyTypeObject *t = Py_TYPE(v);
    if (is_leaf_type(t)) {
        return leaf_same(v, items[(*i)++]);
    }
    if (depth >= MAX_DEPTH || *i + 1 >= n) {
        return 0;
    }
    if (t == &PyDict_Type) {
        if (items[*i] != (PyObject *)&PyDict_Type ||
            !size_is(items[*i + 1], PyDict_GET_SIZE(v))) {
            return 0;
        }
        *i += 2;
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (*i + 1 >= n) {
                return 0;
            }
            /* The recorded key itself (keys are recorded as exact str), else an equal str. */
            PyObject *rk = items[*i];
            if (k != rk && (Py_TYPE(k) != &PyUnicode_Type || !leaf_same(k, rk))) {
                return 0;
            }
            (*i)++;
            /* The recorded leaf itself: frameworks rebuild the containers of a tool list per
             * call around the same strings, so this skips a call for most values, and reads
             * nothing of the value (its header is cold in a long-lived string). Where the record
             * holds a container marker (one of three type objects) no JSON value can be it. */
            if (x == items[*i] && !is_marker(x)) {
                (*i)++;
                continue;
            }
            if (!same_at(x, items, n, i, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t size = Py_SIZE(v);
        if (items[*i] != (PyObject *)t || !size_is(items[*i + 1], size)) {
            return 0;
        }
        *i += 2;
        PyObject *const *vi = t == &PyList_Type ? &PyList_GET_ITEM(v, 0) : &PyTuple_GET_ITEM(v, 0);
        for (Py_ssize_t j = 0; j < size; j++) {
            if (*i < n && vi[j] == items[*i] && !is_marker(vi[j])) {
                (*i)++; /* the recorded leaf itself, as in a dict above */
                continue;
            }
            if (!same_at(vi[j], items, n, i, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

static int
same_items(PyObject *list, PyObject *items)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (!PyTuple_CheckExact(items) || PyTuple_GET_SIZE(items) != n) {
        return 0;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (PyList_GET_ITEM(list, j) != PyTuple_GET_ITEM(items, j)) {
            return 0;
        }
    }
    return 1;
}

/* The fast path: v is (or, for a list, holds) the recorded objects, all untouched. */
static int
same_objects(PyObject *v, PyObject *conts, PyObject *tags)
{
    Py_ssize_t nc = PyTuple_GET_SIZE(conts);
#if DICT_TRUST_TAGS
    if (nc < 2 || !PyBytes_CheckExact(tags)) {
        return 0;
    }
    const char *tag = PyBytes_AS_STRING(tags);
    const char *tag_end = tag + PyBytes_GET_SIZE(tags);
#else
    uint64_t since;
    if (nc < 2 || !PyByteArray_CheckExact(tags) || PyByteArray_GET_SIZE(tags) != sizeof since) {
        return 0;
    }
    memcpy(&since, PyByteArray_AS_STRING(tags), sizeof since);
    if (since != watched_epoch) {
        return 0; /* some watched dict changed since: maybe one of ours */
    }
#endif
    PyObject *const *c = &PyTuple_GET_ITEM(conts, 0);
    Py_ssize_t start = 0;
    if (v != c[0]) {
        /* A new list around the same items (a framework rebuilding its request). */
        if (!PyList_CheckExact(v) || !PyList_CheckExact(c[0]) || !same_items(v, c[1])) {
            return 0;
        }
        start = 2;
    }
    for (Py_ssize_t j = start; j < nc; j += 2) {
        PyObject *o = c[j];
        if (PyDict_CheckExact(o)) {
#if DICT_TRUST_TAGS
            uint64_t want;
            if (tag + sizeof want > tag_end) {
                return 0;
            }
            memcpy(&want, tag, sizeof want);
            tag += sizeof want;
            if (dict_version(o) != want) {
                return 0;
            }
#endif
        }
        else if (PyList_CheckExact(o)) {
            if (!same_items(o, c[j + 1])) {
                return 0;
            }
        }
        else if (!PyTuple_CheckExact(o)) { /* tuples are immutable: nothing to check */
            return 0;
        }
    }
#if DICT_TRUST_TAGS
    return tag == tag_end;
#else
    return 1;
#endif
}

#if !DICT_TRUST_TAGS
/* Whether v's containers are the recorded ones (identity, in record order): then a content
 * match also means every one of them is watched and equal, and the record can be trusted
 * again from now on. */
static int
same_containers(PyObject *v, PyObject *const *c, Py_ssize_t nc, Py_ssize_t *j, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t != &PyDict_Type && t != &PyList_Type && t != &PyTuple_Type) {
        return 1; /* a leaf */
    }
    if (*j + 1 >= nc || depth >= MAX_DEPTH) {
        return 0;
    }
    if (c[*j] != v) {
        /* Only the root may be a new list around the recorded items. */
        if (depth > 0 || t != &PyList_Type || !PyList_CheckExact(c[*j]) || !same_items(v, c[*j + 1])) {
            return 0;
        }
    }
    else if (t == &PyList_Type && !same_items(v, c[*j + 1])) {
        return 0;
    }
    *j += 2;
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!same_containers(x, c, nc, j, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    PyObject *const *items = t == &PyList_Type ? &PyList_GET_ITEM(v, 0) : &PyTuple_GET_ITEM(v, 0);
    for (Py_ssize_t i = 0; i < Py_SIZE(v); i++) {
        if (!same_containers(items[i], c, nc, j, depth + 1)) {
            return 0;
        }
    }
    return 1;
}
#endif

static int
same_record(PyObject *v, PyObject *rec)
{
    if (!PyTuple_CheckExact(rec) || PyTuple_GET_SIZE(rec) != 3) {
        return 0;
    }
    PyObject *flat = PyTuple_GET_ITEM(rec, 0), *conts = PyTuple_GET_ITEM(rec, 1);
    if (!PyTuple_CheckExact(flat)) {
        return 0;
    }
    PyObject *tags = PyTuple_GET_ITEM(rec, 2);
    if (PyTuple_CheckExact(conts) && same_objects(v, conts, tags)) {
        return 1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(flat);
    Py_ssize_t i = 0;
    if (!same_at(v, &PyTuple_GET_ITEM(flat, 0), n, &i, 0) || i != n) {
        return 0;
    }
#if !DICT_TRUST_TAGS
    /* Equal content in the very same (watched) containers: trust the record again from the
     * current count, so an unrelated watched dict's mutation costs one walk, not all later ones. */
    if (PyTuple_CheckExact(conts) && PyByteArray_CheckExact(tags) &&
        PyByteArray_GET_SIZE(tags) == sizeof watched_epoch) {
        Py_ssize_t j = 0;
        Py_ssize_t nc = PyTuple_GET_SIZE(conts);
        if (nc > 0 && same_containers(v, &PyTuple_GET_ITEM(conts, 0), nc, &j, 0) && j == nc) {
            memcpy(PyByteArray_AS_STRING(tags), &watched_epoch, sizeof watched_epoch);
        }
    }
#endif
    return 1;
}

PyDoc_STRVAR(take_doc,
             "take(value) -> tuple | None\n\n"
             "A record of JSON-like ``value`` for :func:`same`; None when it holds a type "
             "other than exact dict, list, str, int, float, bool or None.");

static PyObject *
take(PyObject *module, PyObject *value)
{
    Taking tk = {PyList_New(0), PyList_New(0), {NULL, 0, 0}, 0};
    PyObject *rec = NULL;
    if (tk.flat == NULL || tk.conts == NULL) {
        goto done;
    }
    int r = take_into(value, &tk, 0);
    if (r != 0) {
        if (r > 0) {
            rec = Py_NewRef(Py_None);
        }
        goto done;
    }
    PyObject *flat = PyList_AsTuple(tk.flat);
    PyObject *conts = PyList_AsTuple(tk.conts);
#if DICT_TRUST_TAGS
    PyObject *tags = PyBytes_FromStringAndSize((const char *)tk.tags.v, tk.tags.n * (Py_ssize_t)sizeof(uint64_t));
#else
    /* The count after every dict was watched: nothing of this value has changed since. An
     * empty tag (some dict unwatched) never passes the fast path. */
    PyObject *tags = tk.unwatched
                         ? PyByteArray_FromStringAndSize(NULL, 0)
                         : PyByteArray_FromStringAndSize((const char *)&watched_epoch, sizeof watched_epoch);
#endif
    if (flat != NULL && conts != NULL && tags != NULL) {
        rec = PyTuple_Pack(3, flat, conts, tags);
    }
    Py_XDECREF(flat);
    Py_XDECREF(conts);
    Py_XDECREF(tags);
done:
    Py_XDECREF(tk.flat);
    Py_XDECREF(tk.conts);
    PyMem_Free(tk.tags.v);
    return rec;
}

/* The argument count of a METH_FASTCALL function (a TypeError naming it otherwise). */
static int
n_args(const char *name, Py_ssize_t nargs, Py_ssize_t n)
{
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name, n, nargs);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(same_doc,
             "same(value, record) -> bool\n\n"
             "True when ``value`` still serializes as it did when ``record`` was taken.");

static PyObject *
same(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!n_args("same", nargs, 2)) {
        return NULL;
    }
    return PyBool_FromLong(same_record(args[0], args[1]));
}

PyDoc_STRVAR(common_prefix_doc,
             "common_prefix(values, records) -> int\n\n"
             "How many leading ``values`` match their ``records`` (two sequences).");

static PyObject *
common_prefix(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!n_args("common_prefix", nargs, 2)) {
        return NULL;
    }
    PyObject *values = PySequence_Fast(args[0], "common_prefix(): values must be a sequence");
    if (values == NULL) {
        return NULL;
    }
    PyObject *records = PySequence_Fast(args[1], "common_prefix(): records must be a sequence");
    if (records == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    /* Nothing below runs Python code, so neither sequence can change under us. */
    Py_ssize_t limit = PySequence_Fast_GET_SIZE(values);
    if (PySequence_Fast_GET_SIZE(records) < limit) {
        limit = PySequence_Fast_GET_SIZE(records);
    }
    PyObject **v = PySequence_Fast_ITEMS(values), **r = PySequence_Fast_ITEMS(records);
    Py_ssize_t k = 0;
    while (k < limit && same_record(v[k], r[k])) {
        k++;
    }
    Py_DECREF(values);
    Py_DECREF(records);
    return PyLong_FromSsize_t(k);
}

/* ---- SHA-256 of framed inputs: promptcache.canonical.digest ------------------------
 *
 * Keys and block digests are SHA-256 over length-prefixed parts. hashlib's OpenSSL path
 * costs a fixed ~0.6 us per digest on a warm CPU and ~25 us on a cold one (an EVP context,
 * a provider lookup, a context copy for hexdigest: a lot of code for 60 bytes), and the
 * next model call of an agent digests its new turn right after the framework's work has
 * evicted that code. Here the framing, the hash and the hex are one call into a little
 * code: the CPU's SHA extensions where it has them, else a plain FIPS 180-4
 * implementation. Above a size the function returns None and the caller uses hashlib:
 * OpenSSL's SHA-extension code is ~15 % faster per byte, which outweighs its set-up from
 * about 8 KB (NI_MAX_BYTES); the portable code is ~6x slower per byte (PORTABLE_MAX_BYTES). */

#define NI_MAX_BYTES 8192
#define PORTABLE_MAX_BYTES 256

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t used;    /* bytes waiting in buf */
    uint64_t total; /* bytes hashed so far */
} Sha256;

static inline uint32_t
rotr32(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void
sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_NI_CODE 1

/* Whether this CPU has the SHA extensions (and the SSSE3/SSE4.1 the code also uses). */
static int
cpu_has_sha_ni(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) {
        return 0;
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        return 0;
    }
    return (b >> 29) & 1;
}

/* The 64 rounds over n whole blocks, four rounds per step: sha256msg1/msg2 extend the
 * message schedule four words at a time (m[g % 4] becomes words 4g..4g+3 from the four
 * previous groups), sha256rnds2 runs two rounds on the (ABEF, CDGH) register pair. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);  /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);       /* CDGH */
    for (; n > 0; n--, p += 64) {
        __m128i abef = s0, cdgh = s1, m[4];
        for (int g = 0; g < 16; g++) {
            if (g < 4) {
                m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
            }
            else {
                __m128i x = _mm_sha256msg1_epu32(m[g % 4], m[(g + 1) % 4]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(g + 3) % 4], m[(g + 2) % 4], 4));
                m[g % 4] = _mm_sha256msg2_epu32(x, m[(g + 3) % 4]);
            }
            __m128i wk = _mm_add_epi32(m[g % 4], _mm_loadu_si128((const __m128i *)&sha256_k[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, wk);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk, 0x0E));
        }
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);
    s1 = _mm_shuffle_epi32(s1, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));
}
#else
#define HAVE_SHA_NI_CODE 0
#endif

/* Set once at import: 1 when the SHA-extension code runs on this CPU. */
static int use_sha_ni = 0;

static void
sha256_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#if HAVE_SHA_NI_CODE
    if (use_sha_ni) {
        sha256_blocks_ni(h, p, n);
        return;
    }
#endif
    for (; n > 0; n--, p += 64) {
        sha256_block(h, p);
    }
}

static void
sha256_init(Sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->used = 0;
    s->total = 0;
}

static void
sha256_update(Sha256 *s, const uint8_t *p, size_t n)
{
    s->total += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->buf + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64) {
            return;
        }
        sha256_blocks(s->h, s->buf, 1);
        s->used = 0;
    }
    sha256_blocks(s->h, p, n / 64);
    p += n & ~(size_t)63;
    n &= 63;
    memcpy(s->buf, p, n);
    s->used = n;
}

static void
sha256_final(Sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t npad = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++) {
        pad[npad + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    sha256_update(s, pad, npad + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static PyObject *
hex_of(const uint8_t md[32])
{
    PyObject *hex = PyUnicode_New(64, 127);
    if (hex == NULL) {
        return NULL;
    }
    static const char digits[] = "0123456789abcdef";
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(hex);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = (Py_UCS1)digits[md[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[md[i] & 15];
    }
    return hex;
}

PyDoc_STRVAR(framed_sha256_doc,
             "framed_sha256(*parts) -> str | None\n\n"
             "SHA-256 hex of the parts (bytes), each preceded by its length as 8 big-endian "
             "bytes; None when they are not all bytes or total more than 8 KB (256 bytes on a "
             "CPU without SHA extensions): hashlib is faster there.");

static PyObject *
framed_sha256(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    size_t total = 0;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        if (!PyBytes_CheckExact(args[i])) {
            Py_RETURN_NONE;
        }
        total += 8 + (size_t)PyBytes_GET_SIZE(args[i]);
    }
    if (total > (use_sha_ni ? NI_MAX_BYTES : PORTABLE_MAX_BYTES)) {
        Py_RETURN_NONE;
    }
    Sha256 s;
    uint8_t md[32];
    sha256_init(&s);
    for (Py_ssize_t i = 0; i < nargs; i++) {
        uint64_t n = (uint64_t)PyBytes_GET_SIZE(args[i]);
        uint8_t len[8];
        for (int j = 0; j < 8; j++) {
            len[j] = (uint8_t)(n >> (56 - 8 * j));
        }
        sha256_update(&s, len, 8);
        sha256_update(&s, (const uint8_t *)PyBytes_AS_STRING(args[i]), (size_t)n);
    }
    sha256_final(&s, md);
    return hex_of(md);
}

/* An incremental SHA-256 with hashlib's update/copy/hexdigest, for the hash states the
 * engine extends on every call of a growing conversation (prefix, then history digests)
 * and for key derivation: same reason as framed_sha256, no OpenSSL set-up per call. */
typedef struct {
    PyObject_HEAD Sha256 s;
} HashObject;

static PyTypeObject HashType;

static int
hash_feed(HashObject *self, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError, "Sha256 takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return -1;
    }
    sha256_update(&self->s, (const uint8_t *)PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
    return 0;
}

static PyObject *
hash_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *data = NULL;
    if ((kwds != NULL && PyDict_GET_SIZE(kwds) != 0) || !PyArg_UnpackTuple(args, "Sha256", 0, 1, &data)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Sha256() takes no keyword arguments");
        }
        return NULL;
    }
    HashObject *self = (HashObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    sha256_init(&self->s);
    if (data != NULL && hash_feed(self, data) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *
hash_update(HashObject *self, PyObject *data)
{
    if (hash_feed(self, data) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
hash_copy(HashObject *self, PyObject *unused)
{
    HashObject *out = PyObject_New(HashObject, Py_TYPE(self));
    if (out != NULL) {
        out->s = self->s;
    }
    return (PyObject *)out;
}

static PyObject *
hash_hexdigest(HashObject *self, PyObject *unused)
{
    Sha256 done = self->s; /* the object can still be extended afterwards, as hashlib's */
    uint8_t md[32];
    sha256_final(&done, md);
    return hex_of(md);
}

static PyMethodDef hash_methods[] = {
    {"update", (PyCFunction)hash_update, METH_O, "Hash ``data`` (bytes) after what came before."},
    {"copy", (PyCFunction)hash_copy, METH_NOARGS, "An independent copy of this hash state."},
    {"hexdigest", (PyCFunction)hash_hexdigest, METH_NOARGS, "The digest so far, as 64 hex digits."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HashType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "promptcache._speedups.Sha256",
    .tp_basicsize = sizeof(HashObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Sha256(data=b'', /): SHA-256 with hashlib's update, copy and hexdigest."),
    .tp_methods = hash_methods,
    .tp_new = hash_new,
};

PyDoc_STRVAR(sha_extensions_doc,
             "sha_extensions() -> bool\n\n"
             "Whether framed_sha256 runs on the CPU's SHA extensions (else the portable code).");

static PyObject *
sha_extensions(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(use_sha_ni);
}

/* ---- Stamps of a dict's contents (promptcache_langchain's copy of a chat model) ----
 * The same mechanism as a record's fast path: on 3.11 the dict's version tag, on 3.12+ the
 * count of mutations of watched dicts (the dict is watched from its first stamp on). */
PyDoc_STRVAR(dict_stamp_doc,
             "dict_stamp(d, /) -> bytes | None\n\n"
             "A stamp of dict ``d`` as it is now: ``stamp_holds(d, stamp)`` stays true only while\n"
             "``d`` is not mutated (it may turn false without a mutation of ``d``). None when ``d``\n"
             "cannot be stamped (not an exact dict, or no dict watcher left on 3.12+).");

static PyObject *
dict_stamp(PyObject *module, PyObject *d)
{
    if (!PyDict_CheckExact(d)) {
        Py_RETURN_NONE;
    }
    uint64_t v;
#if DICT_TRUST_TAGS
    v = dict_version(d);
#else
    if (watcher < 0 || PyDict_Watch(watcher, d) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    v = watched_epoch;
#endif
    return PyBytes_FromStringAndSize((const char *)&v, sizeof v);
}

PyDoc_STRVAR(stamp_holds_doc,
             "stamp_holds(d, stamp, /) -> bool\n\n"
             "Whether dict ``d`` is provably unchanged since ``dict_stamp(d)`` gave ``stamp``.");

static PyObject *
stamp_holds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!n_args("stamp_holds", nargs, 2)) {
        return NULL;
    }
    PyObject *d = args[0], *stamp = args[1];
    if (!PyDict_CheckExact(d) || !PyBytes_CheckExact(stamp) || PyBytes_GET_SIZE(stamp) != sizeof(uint64_t)) {
        Py_RETURN_FALSE;
    }
    uint64_t v;
    memcpy(&v, PyBytes_AS_STRING(stamp), sizeof v);
#if DICT_TRUST_TAGS
    return PyBool_FromLong(v == dict_version(d));
#else
    return PyBool_FromLong(v == watched_epoch);
#endif
}

/* ---- Pydantic models from values already checked (promptcache.unchecked) ----
 * The Python form pays a wrapper-descriptor call per object.__setattr__ and for cls.__new__
 * (~2,000 instructions each, ~11,000 a model); a warm model call builds five such models. */
static PyObject *str_dict, *str_fields_set, *str_extra, *str_private, *empty_tuple;

PyDoc_STRVAR(unchecked_doc,
             "unchecked(cls, values, fields_set, private, /) -> an instance of cls\n\n"
             "cls.__new__(cls), then object.__setattr__ of __dict__ (values, a dict),\n"
             "__pydantic_fields_set__ (fields_set, or set(values) when None),\n"
             "__pydantic_extra__ (None) and __pydantic_private__ (private): what\n"
             "promptcache.unchecked.unchecked does in Python.");

static PyObject *
unchecked(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!n_args("unchecked", nargs, 4)) {
        return NULL;
    }
    PyObject *cls = args[0], *values = args[1], *fields = args[2], *private = args[3];
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "unchecked(): cls must be a class");
        return NULL;
    }
    if (!PyDict_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "unchecked(): values must be a dict");
        return NULL;
    }
    newfunc new = ((PyTypeObject *)cls)->tp_new;
    if (new == NULL) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances", ((PyTypeObject *)cls)->tp_name);
        return NULL;
    }
    PyObject *obj = new((PyTypeObject *)cls, empty_tuple, NULL);
    if (obj == NULL) {
        return NULL;
    }
    PyObject *fs = fields == Py_None ? PySet_New(values) : Py_NewRef(fields);
    if (fs == NULL || PyObject_GenericSetAttr(obj, str_dict, values) < 0 ||
        PyObject_GenericSetAttr(obj, str_fields_set, fs) < 0 ||
        PyObject_GenericSetAttr(obj, str_extra, Py_None) < 0 ||
        PyObject_GenericSetAttr(obj, str_private, private) < 0) {
        Py_XDECREF(fs);
        Py_DECREF(obj);
        return NULL;
    }
    Py_DECREF(fs);
    return obj;
}

/* ---- The wire adapters' message check (promptcache.wire.first_without_role) ---- */
static PyObject *str_role;

PyDoc_STRVAR(first_without_role_doc,
             "first_without_role(messages, roles, /) -> int\n\n"
             "Index of the first item of the list ``messages`` that is not a dict with a 'role'\n"
             "(or, when ``roles`` is not None, whose role is not in ``roles``); -1 if none.");

static PyObject *
first_without_role(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!n_args("first_without_role", nargs, 2)) {
        return NULL;
    }
    if (!PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "first_without_role(): messages must be a list");
        return NULL;
    }
    PyObject *messages = args[0], *roles = args[1];
    /* Items are read by index each turn: a role's __eq__ (roles given) may run Python code. */
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(messages); j++) {
        PyObject *m = PyList_GET_ITEM(messages, j);
        if (!PyDict_Check(m)) {
            return PyLong_FromSsize_t(j);
        }
        Py_INCREF(m);
        int ok;
        if (!PyDict_CheckExact(m)) {
            /* A dict subclass gets the Python semantics: "role" in m, or m.get("role") in roles. */
            if (roles == Py_None) {
                ok = PySequence_Contains(m, str_role);
            }
            else {
                PyObject *role = PyObject_CallMethod(m, "get", "O", str_role);
                ok = role == NULL ? -1 : PySequence_Contains(roles, role);
                Py_XDECREF(role);
            }
        }
        else {
            PyObject *role = PyDict_GetItemWithError(m, str_role);
            if (role == NULL) {
                ok = PyErr_Occurred() ? -1 : roles == Py_None ? 0 : PySequence_Contains(roles, Py_None);
            }
            else if (roles == Py_None) {
                ok = 1;
            }
            else {
                Py_INCREF(role);
                ok = PySequence_Contains(roles, role);
                Py_DECREF(role);
            }
        }
        Py_DECREF(m);
        if (ok < 0) {
            return NULL;
        }
        if (!ok) {
            return PyLong_FromSsize_t(j);
        }
    }
    return PyLong_FromLong(-1);
}

/* ---- The secrets/PII prefilter (promptcache.detect.sensitive_clue) ---- */

/* Per ASCII character: what it can be a clue of. See detect.py for why these four suffice. */
enum { CLUE_CHAR = 1, CLUE_RUN = 2, CLUE_DIGIT = 4, CLUE_UPPER = 8 };
static unsigned char clue_class[128];

static void
init_clue_class(void)
{
    for (int c = 0; c < 128; c++) {
        unsigned char k = 0;
        if (c == '@' || c == '+' || c == '=' || c == '-') {
            k |= CLUE_CHAR;
        }
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
            c == '.' || c == '/' || c == '~') {
            k |= CLUE_RUN;
        }
        if (c >= '0' && c <= '9') {
            k |= CLUE_DIGIT;
        }
        if (c >= 'A' && c <= 'Z') {
            k |= CLUE_UPPER;
        }
        clue_class[c] = k;
    }
}

PyDoc_STRVAR(sensitive_clue_doc,
             "sensitive_clue(text, /) -> bool\n\n"
             "Whether ``text`` has one of the clues every secret/PII pattern needs: a character\n"
             "of '@+=-', a run of 20 of [A-Za-z0-9_./~], 13 ASCII digits, or [A-Z][A-Z][0-9][0-9].");

static PyObject *
sensitive_clue(PyObject *module, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "sensitive_clue(): text must be a str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), run = 0, digits = 0;
    /* How much of "upper upper digit digit" ends at the current character (0-3). */
    int iban = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        unsigned char k = c < 128 ? clue_class[c] : 0;
        if (k & CLUE_CHAR) {
            Py_RETURN_TRUE;
        }
        run = (k & CLUE_RUN) ? run + 1 : 0;
        if (run >= 20) {
            Py_RETURN_TRUE;
        }
        if (k & CLUE_DIGIT) {
            if (++digits >= 13 || iban == 3) {
                Py_RETURN_TRUE;
            }
            iban = iban == 2 ? 3 : 0;
        }
        else {
            iban = (k & CLUE_UPPER) ? (iban == 0 || iban == 3 ? 1 : 2) : 0;
        }
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"take", (PyCFunction)take, METH_O, take_doc},
    {"same", (PyCFunction)(void (*)(void))same, METH_FASTCALL, same_doc},
    {"common_prefix", (PyCFunction)(void (*)(void))common_prefix, METH_FASTCALL, common_prefix_doc},
    {"framed_sha256", (PyCFunction)(void (*)(void))framed_sha256, METH_FASTCALL, framed_sha256_doc},
    {"sha_extensions", (PyCFunction)sha_extensions, METH_NOARGS, sha_extensions_doc},
    {"unchecked", (PyCFunction)(void (*)(void))unchecked, METH_FASTCALL, unchecked_doc},
    {"first_without_role", (PyCFunction)(void (*)(void))first_without_role, METH_FASTCALL,
     first_without_role_doc},
    {"dict_stamp", (PyCFunction)dict_stamp, METH_O, dict_stamp_doc},
    {"stamp_holds", (PyCFunction)(void (*)(void))stamp_holds, METH_FASTCALL, stamp_holds_doc},
    {"sensitive_clue", (PyCFunction)sensitive_clue, METH_O, sensitive_clue_doc},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *m)
{
    if (empty_tuple == NULL) {
        empty_tuple = PyTuple_New(0);
        str_dict = PyUnicode_InternFromString("__dict__");
        str_fields_set = PyUnicode_InternFromString("__pydantic_fields_set__");
        str_extra = PyUnicode_InternFromString("__pydantic_extra__");
        str_private = PyUnicode_InternFromString("__pydantic_private__");
        str_role = PyUnicode_InternFromString("role");
        if (!empty_tuple || !str_dict || !str_fields_set || !str_extra || !str_private || !str_role) {
            return -1;
        }
    }
    init_clue_class();
    if (PyType_Ready(&HashType) < 0) {
        return -1;
    }
    Py_INCREF(&HashType);
    if (PyModule_AddObject(m, "Sha256", (PyObject *)&HashType) < 0) {
        Py_DECREF(&HashType);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "promptcache._speedups",
    "Native fingerprints of JSON-like values (promptcache.fingerprint) and SHA-256 (promptcache.canonical).",
    0,
    methods,
    module_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
#if HAVE_SHA_NI_CODE
    /* PROMPTCACHE_NO_SHA_NI=1 runs the portable code (the tests check both give hashlib's). */
    const char *off = getenv("PROMPTCACHE_NO_SHA_NI");
    use_sha_ni = (off == NULL || off[0] == '\0' || off[0] == '0') && cpu_has_sha_ni();
#endif
#if !DICT_TRUST_TAGS
    if (watcher < 0) {
        watcher = PyDict_AddWatcher(on_dict_event);
        if (watcher < 0) {
            PyErr_Clear(); /* every watcher slot taken: records are walked, never trusted */
        }
    }
#endif
    return PyModuleDef_Init(&module);
}
