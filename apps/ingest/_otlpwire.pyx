# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""OTLP/protobuf ``ExportTraceServiceRequest`` read straight off the wire, for the ingest fast
path (``apps.ingest.fastotlp.otlp_columns_from_bytes``).

Reading a request through protobuf's Python objects costs about a microsecond per attribute
(every KeyValue, AnyValue and string becomes an object). This reader walks the bytes once and
builds only what the mapping needs: per span its ids, name, times, status, and its attributes as
a dict converted exactly like ``otlp._convert_kvs`` does for scalar values.

It is deliberately narrow. It returns ``None`` for anything it does not handle the way protobuf
would: malformed or truncated input, invalid UTF-8, groups, a known field with an unexpected wire
type, a singular message repeated, values other than strings, ints, bools, finite doubles and
arrays of strings/ints/bools, and the newer dictionary-index fields. The caller then decodes the
request with protobuf and takes the ordinary path, which owns every error message. Unknown fields
are skipped, as protobuf does. ``tests/ingest/test_otlpwire.py`` checks it against protobuf.

The module also holds ``canonical_json`` (end of file), which both fast paths (OTLP and native)
use to keep ``input``/``output`` JSON that is already compact as sent; it is here to keep one
optional compiled module for the OTLP side of ingest rather than add another build step.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy


class Unsupported(Exception):
    """Not something this reader vouches for: protobuf decides."""


cdef object _UNSUPPORTED = Unsupported

# AnyValue kinds
cdef enum:
    V_NONE = 0
    V_PLAIN = 1  # str, int, bool: the value as is
    V_DOUBLE = 2
    V_ARRAY = 3  # a list of str/int/bool


cdef struct Buf:
    const unsigned char* p
    Py_ssize_t pos
    Py_ssize_t end


cdef inline uint64_t _varint(Buf* b) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char byte
    while True:
        if b.pos >= b.end:
            raise _UNSUPPORTED("truncated varint")
        byte = b.p[b.pos]
        b.pos += 1
        if shift == 63 and byte > 1:
            raise _UNSUPPORTED("varint too long")
        result |= (<uint64_t>(byte & 0x7F)) << shift
        if not (byte & 0x80):
            return result
        shift += 7
        if shift > 63:
            raise _UNSUPPORTED("varint too long")


cdef inline uint64_t _fixed64(Buf* b) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t v
    if b.end - b.pos < 8:
        raise _UNSUPPORTED("truncated fixed64")
    memcpy(&v, b.p + b.pos, 8)  # little-endian, as x86-64 and aarch64 are
    b.pos += 8
    return v


cdef inline Py_ssize_t _len(Buf* b) except -1:
    """Reads a length prefix; returns where the field ends (its body starts at b.pos)."""
    cdef uint64_t n = _varint(b)
    if n > <uint64_t>(b.end - b.pos):
        raise _UNSUPPORTED("length past the end")
    return b.pos + <Py_ssize_t>n


cdef inline int _tag(Buf* b, uint32_t* field, int* wire) except -1:
    cdef uint64_t t = _varint(b)
    if t > 0xFFFFFFFF:
        raise _UNSUPPORTED("bad tag")
    field[0] = <uint32_t>(t >> 3)
    wire[0] = <int>(t & 7)
    if field[0] == 0:
        raise _UNSUPPORTED("field number 0")
    return 0


cdef int _skip(Buf* b, int wire) except -1:
    cdef Py_ssize_t end
    if wire == 0:
        _varint(b)
    elif wire == 1:
        if b.end - b.pos < 8:
            raise _UNSUPPORTED("truncated")
        b.pos += 8
    elif wire == 2:
        end = _len(b)
        b.pos = end
    elif wire == 5:
        if b.end - b.pos < 4:
            raise _UNSUPPORTED("truncated")
        b.pos += 4
    else:
        raise _UNSUPPORTED("group or bad wire type")
    return 0


cdef inline int _expect(int wire, int want) except -1:
    if wire != want:
        raise _UNSUPPORTED("unexpected wire type")
    return 0


cdef inline str _str(Buf* b):
    cdef Py_ssize_t end = _len(b)
    cdef Py_ssize_t start = b.pos
    b.pos = end
    return PyUnicode_DecodeUTF8(<const char*>(b.p + start), end - start, NULL)


cdef inline bytes _bytes(Buf* b):
    cdef Py_ssize_t end = _len(b)
    cdef Py_ssize_t start = b.pos
    b.pos = end
    return PyBytes_FromStringAndSize(<const char*>(b.p + start), end - start)


# A known field read after checking its wire type (else the request is left to protobuf).
cdef inline Py_ssize_t _sub_f(Buf* b, int wire) except -1:
    """A length-delimited field: where it ends (its body starts at b.pos)."""
    _expect(wire, 2)
    return _len(b)


cdef inline str _str_f(Buf* b, int wire):
    _expect(wire, 2)
    return _str(b)


cdef inline bytes _bytes_f(Buf* b, int wire):
    _expect(wire, 2)
    return _bytes(b)


cdef inline uint64_t _fixed64_f(Buf* b, int wire) except? 0xFFFFFFFFFFFFFFFF:
    _expect(wire, 1)
    return _fixed64(b)


cdef inline uint64_t _varint_f(Buf* b, int wire) except? 0xFFFFFFFFFFFFFFFF:
    _expect(wire, 0)
    return _varint(b)


cdef object _any(Buf* b, Py_ssize_t end, int* kind):
    """One AnyValue (body up to ``end``): its value, and its kind in ``kind[0]``. An AnyValue
    that sets its oneof more than once (protobuf would merge) is left to protobuf."""
    cdef uint32_t field
    cdef int wire
    cdef uint64_t u
    cdef double d
    cdef Py_ssize_t sub
    cdef Py_ssize_t inner_end
    cdef int inner_kind
    cdef list lst
    cdef object item
    cdef object value = None
    kind[0] = V_NONE
    while b.pos < end:
        _tag(b, &field, &wire)
        if 1 <= field <= 8 and kind[0] != V_NONE:
            raise _UNSUPPORTED("oneof set twice")
        if field == 1:
            value = _str_f(b, wire)
            kind[0] = V_PLAIN
        elif field == 2:
            value = _varint_f(b, wire) != 0
            kind[0] = V_PLAIN
        elif field == 3:
            u = _varint_f(b, wire)
            value = <int64_t>u
            kind[0] = V_PLAIN
        elif field == 4:
            u = _fixed64_f(b, wire)
            memcpy(&d, &u, 8)
            if not isfinite(d):
                raise _UNSUPPORTED("non-finite double")
            value = d
            kind[0] = V_DOUBLE
        elif field == 5:
            sub = _sub_f(b, wire)
            lst = []
            while b.pos < sub:  # ArrayValue: values = 1
                _tag(b, &field, &wire)
                if field != 1:
                    _skip(b, wire)
                    continue
                inner_end = _sub_f(b, wire)
                item = _any(b, inner_end, &inner_kind)
                if inner_kind != V_PLAIN:
                    raise _UNSUPPORTED("array of other values")
                lst.append(item)
            if b.pos != sub:
                raise _UNSUPPORTED("overrun")
            value = lst
            kind[0] = V_ARRAY
        elif field == 6 or field == 7 or field == 8:
            raise _UNSUPPORTED("kvlist, bytes or indexed string")
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    return value


cdef int _kvs_into(Buf* b, Py_ssize_t end, dict out, dict structured, Py_ssize_t max_bytes) except -1:
    """One KeyValue (body up to ``end``) into ``out``, as otlp._convert_kvs does; returns 1 when
    the value breaks a size rule (a string, or a list's strings together, over ``max_bytes``)."""
    cdef uint32_t field
    cdef Py_ssize_t size
    cdef object item
    cdef int wire
    cdef object key = None
    cdef object value = None
    cdef int kind = V_NONE
    cdef bint seen_value = False
    cdef Py_ssize_t sub
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 1:
            key = _str_f(b, wire)
        elif field == 2:
            if seen_value:
                raise _UNSUPPORTED("value repeated")  # protobuf would merge the two
            seen_value = True
            sub = _sub_f(b, wire)
            value = _any(b, sub, &kind)
        elif field == 3:
            raise _UNSUPPORTED("key index")
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    if kind == V_NONE:
        return 0
    if key is None:
        key = ""
    out[key] = value
    if kind == V_ARRAY:
        if structured is not None:
            structured[key] = value
        size = 0  # the size rule of a list: its strings' lengths added up
        for item in <list>value:
            if type(item) is str:
                size += len(<str>item)
        return 1 if size > max_bytes else 0
    if kind == V_PLAIN and type(value) is str and len(<str>value) > max_bytes:
        return 1
    return 0


cdef tuple _event(Buf* b, Py_ssize_t end, Py_ssize_t max_bytes):
    cdef uint32_t field
    cdef int wire
    cdef uint64_t t = 0
    cdef str name = ""
    cdef dict attrs = {}
    cdef Py_ssize_t sub
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 1:
            t = _fixed64_f(b, wire)
        elif field == 2:
            name = _str_f(b, wire)
        elif field == 3:
            sub = _sub_f(b, wire)
            _kvs_into(b, sub, attrs, None, max_bytes)
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    return (name, t, attrs)


cdef int _validate_kvs(Buf* b, Py_ssize_t end) except -1:
    """A KeyValue the mapping ignores (link attributes, scope attributes): parsed only so that
    what protobuf would refuse is refused here too."""
    cdef dict sink = {}
    _kvs_into(b, end, sink, None, 0)
    return 0


cdef tuple _link(Buf* b, Py_ssize_t end):
    cdef uint32_t field
    cdef int wire
    cdef bytes trace_id = b""
    cdef bytes span_id = b""
    cdef Py_ssize_t sub
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 1:
            trace_id = _bytes_f(b, wire)
        elif field == 2:
            span_id = _bytes_f(b, wire)
        elif field == 3:
            _str_f(b, wire)
        elif field == 4:
            sub = _sub_f(b, wire)
            _validate_kvs(b, sub)
        elif field == 5:
            _varint_f(b, wire)
        elif field == 6:
            _expect(wire, 5)
            _skip(b, 5)
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    return (trace_id, span_id)


cdef tuple _span(Buf* b, Py_ssize_t end, Py_ssize_t max_bytes):
    cdef uint32_t field
    cdef int wire
    cdef bytes trace_id = b""
    cdef bytes span_id = b""
    cdef bytes parent = b""
    cdef str name = ""
    cdef uint64_t start = 0
    cdef uint64_t stop = 0
    cdef int32_t code = 0
    cdef str message = ""
    cdef bint status_seen = False
    cdef dict attrs = {}
    cdef dict structured = {}
    cdef int check = 0
    cdef list events = None
    cdef list links = None
    cdef Py_ssize_t sub
    cdef uint32_t f2
    cdef int w2
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 9:
            sub = _sub_f(b, wire)
            check |= _kvs_into(b, sub, attrs, structured, max_bytes)
        elif field == 1:
            trace_id = _bytes_f(b, wire)
        elif field == 2:
            span_id = _bytes_f(b, wire)
        elif field == 4:
            parent = _bytes_f(b, wire)
        elif field == 5:
            name = _str_f(b, wire)
        elif field == 7:
            start = _fixed64_f(b, wire)
        elif field == 8:
            stop = _fixed64_f(b, wire)
        elif field == 15:
            if status_seen:
                raise _UNSUPPORTED("status repeated")
            status_seen = True
            sub = _sub_f(b, wire)
            while b.pos < sub:
                _tag(b, &f2, &w2)
                if f2 == 2:
                    message = _str_f(b, w2)
                elif f2 == 3:
                    code = <int32_t>_varint_f(b, w2)
                else:
                    _skip(b, w2)
            if b.pos != sub:
                raise _UNSUPPORTED("overrun")
        elif field == 11:
            sub = _sub_f(b, wire)
            if events is None:
                events = []
            events.append(_event(b, sub, max_bytes))
        elif field == 13:
            sub = _sub_f(b, wire)
            if links is None:
                links = []
            links.append(_link(b, sub))
        elif field == 3:
            _str_f(b, wire)  # trace_state: unused, but must be valid UTF-8
        elif field == 6 or field == 10 or field == 12 or field == 14:
            _varint_f(b, wire)
        elif field == 16:
            _expect(wire, 5)
            _skip(b, 5)
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    return (
        trace_id, span_id, parent, name, start, stop, code, message,
        attrs, structured, check != 0, events, links,
    )


cdef tuple _scope_spans(Buf* b, Py_ssize_t end, Py_ssize_t max_bytes, list counter):
    cdef uint32_t field
    cdef int wire
    cdef str scope_name = ""
    cdef str scope_version = ""
    cdef bint scope_seen = False
    cdef list spans = []
    cdef Py_ssize_t sub
    cdef Py_ssize_t sub2
    cdef uint32_t f2
    cdef int w2
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 2:
            sub = _sub_f(b, wire)
            spans.append(_span(b, sub, max_bytes))
        elif field == 1:
            if scope_seen:
                raise _UNSUPPORTED("scope repeated")
            scope_seen = True
            sub = _sub_f(b, wire)
            while b.pos < sub:
                _tag(b, &f2, &w2)
                if f2 == 1:
                    scope_name = _str_f(b, w2)
                elif f2 == 2:
                    scope_version = _str_f(b, w2)
                elif f2 == 3:
                    sub2 = _sub_f(b, w2)
                    _validate_kvs(b, sub2)
                elif f2 == 4:
                    _varint_f(b, w2)
                else:
                    _skip(b, w2)
            if b.pos != sub:
                raise _UNSUPPORTED("overrun")
        elif field == 3:
            _str_f(b, wire)
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    counter[0] += len(spans)
    return (scope_name, scope_version, spans)


cdef tuple _resource_spans(Buf* b, Py_ssize_t end, Py_ssize_t max_bytes, list counter):
    cdef uint32_t field
    cdef int wire
    cdef dict resource = {}
    cdef bint resource_seen = False
    cdef list scopes = []
    cdef Py_ssize_t sub
    cdef Py_ssize_t sub2
    cdef uint32_t f2
    cdef int w2
    while b.pos < end:
        _tag(b, &field, &wire)
        if field == 2:
            sub = _sub_f(b, wire)
            scopes.append(_scope_spans(b, sub, max_bytes, counter))
        elif field == 1:
            if resource_seen:
                raise _UNSUPPORTED("resource repeated")
            resource_seen = True
            sub = _sub_f(b, wire)
            while b.pos < sub:
                _tag(b, &f2, &w2)
                if f2 == 1:
                    sub2 = _sub_f(b, w2)
                    _kvs_into(b, sub2, resource, None, max_bytes)
                elif f2 == 2:
                    _varint_f(b, w2)
                elif f2 == 3:
                    raise _UNSUPPORTED("entity refs")
                else:
                    _skip(b, w2)
            if b.pos != sub:
                raise _UNSUPPORTED("overrun")
        elif field == 3:
            _str_f(b, wire)
        else:
            _skip(b, wire)
    if b.pos != end:
        raise _UNSUPPORTED("overrun")
    return (resource, scopes)


def decode(bytes data, Py_ssize_t max_attribute_bytes):
    """``(resources, span_count)`` or ``None``.

    ``resources`` is a list of ``(resource_attributes, scopes)``; each scope is
    ``(name, version, spans)``; each span is ``(trace_id, span_id, parent_span_id, name,
    start_ns, end_ns, status_code, status_message, attributes, structured, check, events,
    links)`` where ``attributes`` are the span's own (converted as ``otlp._convert_kvs``
    does), ``structured`` holds its array values, ``check`` says a value breaks a size
    rule (the mapping then declines), ``events`` is ``None`` or a list of ``(name, time_ns,
    attributes)`` and ``links`` ``None`` or a list of ``(trace_id, span_id)``."""
    cdef Buf b
    cdef uint32_t field
    cdef int wire
    cdef Py_ssize_t sub
    cdef list resources = []
    cdef list counter = [0]
    b.p = <const unsigned char*>PyBytes_AS_STRING(data)
    b.pos = 0
    b.end = PyBytes_GET_SIZE(data)
    try:
        while b.pos < b.end:
            _tag(&b, &field, &wire)
            if field == 1:
                sub = _sub_f(&b, wire)
                resources.append(_resource_spans(&b, sub, max_attribute_bytes, counter))
            else:
                _skip(&b, wire)
    except (Unsupported, UnicodeDecodeError):
        return None
    return resources, counter[0]


# --- JSON text already in canonical form -------------------------------------------------------
# ``input``/``output`` are stored as ``orjson.dumps(orjson.loads(text))``: an OTLP
# ``input.value`` / ``output.value`` with a JSON mime type, and the raw JSON of a native span's
# ``input``/``output``. Most agents send it compact already, so the round trip (about 3 us for a
# 400-byte message list, mostly building the Python objects) gives back the same bytes.
# ``canonical_json`` recognises that case by scanning the text once.

cdef enum:
    _MAX_DEPTH = 64
    _MAX_KEYS = 256  # keys of the objects open at once

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memcmp


cdef struct JScan:
    const unsigned char* s
    Py_ssize_t n
    Py_ssize_t nkeys
    Py_ssize_t kstart[_MAX_KEYS]
    Py_ssize_t klen[_MAX_KEYS]


cdef inline Py_ssize_t _utf8_char(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """The length of the UTF-8 sequence starting with the non-ASCII byte ``s[i]``, or -1 when
    it is not one that a strict decoder (and orjson) accepts: no overlong forms, no surrogates,
    nothing past U+10FFFF."""
    cdef unsigned char c = s[i]
    cdef unsigned char c1
    if c < 0xC2 or c > 0xF4:
        return -1  # a continuation byte, an overlong lead, or past U+10FFFF
    if i + 1 >= n:
        return -1
    c1 = s[i + 1]
    if (c1 & 0xC0) != 0x80:
        return -1
    if c < 0xE0:
        return 2
    if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
        return -1  # overlong, or a surrogate
    if i + 2 >= n or (s[i + 2] & 0xC0) != 0x80:
        return -1
    if c < 0xF0:
        return 3
    if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
        return -1  # overlong, or past U+10FFFF
    if i + 3 >= n or (s[i + 3] & 0xC0) != 0x80:
        return -1
    return 4


cdef Py_ssize_t _jstring(JScan* j, Py_ssize_t i) noexcept:
    """A string starting at the quote ``s[i]``: where it ends, or -1 when orjson would write
    it differently (any escape other than its own short ones) or it is not valid JSON
    (raw control characters, invalid UTF-8)."""
    cdef const unsigned char* s = j.s
    cdef Py_ssize_t n = j.n
    cdef Py_ssize_t size
    cdef unsigned char c
    i += 1
    while i < n:
        c = s[i]
        if c >= 0x80:
            size = _utf8_char(s, i, n)
            if size < 0:
                return -1
            i += size
            continue
        if c == 34:  # "
            return i + 1
        if c == 92:  # backslash
            if i + 1 >= n:
                return -1
            c = s[i + 1]
            if c == 34 or c == 92 or c == 98 or c == 102 or c == 110 or c == 114 or c == 116:
                i += 2  # \" \\ \b \f \n \r \t: as orjson writes them
                continue
            return -1  # \/ and \uXXXX: orjson writes the character itself
        if c < 0x20:
            return -1  # a raw control character: not JSON
        i += 1
    return -1


cdef Py_ssize_t _jnumber(JScan* j, Py_ssize_t i) noexcept:
    """An integer of at most 18 digits (an int64 both ways), not ``-0``; -1 otherwise
    (fractions and exponents are left to orjson, which may write them differently)."""
    cdef const unsigned char* s = j.s
    cdef Py_ssize_t n = j.n
    cdef Py_ssize_t start
    cdef bint neg = False
    if s[i] == 45:  # -
        neg = True
        i += 1
    start = i
    if i >= n:
        return -1
    if s[i] == 48:  # 0
        if neg:
            return -1
        i += 1
    elif 49 <= s[i] <= 57:
        while i < n and 48 <= s[i] <= 57:
            i += 1
        if i - start > 18:
            return -1
    else:
        return -1
    if i < n and (s[i] == 46 or s[i] == 101 or s[i] == 69 or 48 <= s[i] <= 57):
        return -1  # . e E, or a leading zero followed by digits
    return i


cdef Py_ssize_t _jliteral(JScan* j, Py_ssize_t i, const char* word, Py_ssize_t size) noexcept:
    if j.n - i < size or memcmp(j.s + i, word, size) != 0:
        return -1
    return i + size


cdef Py_ssize_t _jvalue(JScan* j, Py_ssize_t i, int depth) noexcept:
    """The value starting at ``s[i]``: where it ends, or -1 when not canonical."""
    cdef const unsigned char* s = j.s
    cdef Py_ssize_t n = j.n
    cdef Py_ssize_t first_key
    cdef Py_ssize_t k
    cdef Py_ssize_t key_end
    cdef Py_ssize_t key_len
    cdef unsigned char c
    if i >= n:
        return -1
    c = s[i]
    if c == 34:
        return _jstring(j, i)
    if c == 123:  # {
        if depth >= _MAX_DEPTH:
            return -1
        i += 1
        if i < n and s[i] == 125:
            return i + 1
        first_key = j.nkeys
        while True:
            if i >= n or s[i] != 34:
                return -1
            key_end = _jstring(j, i)
            if key_end < 0:
                return -1
            key_len = key_end - i
            # a repeated key: orjson keeps one, so the text changes (spellings are unique here)
            for k in range(first_key, j.nkeys):
                if j.klen[k] == key_len and memcmp(s + j.kstart[k], s + i, key_len) == 0:
                    return -1
            if j.nkeys >= _MAX_KEYS:
                return -1
            j.kstart[j.nkeys] = i
            j.klen[j.nkeys] = key_len
            j.nkeys += 1
            i = key_end
            if i >= n or s[i] != 58:  # :
                return -1
            i = _jvalue(j, i + 1, depth + 1)
            if i < 0 or i >= n:
                return -1
            if s[i] == 44:  # ,
                i += 1
                continue
            if s[i] == 125:  # }
                j.nkeys = first_key  # this object's keys no longer collide with anything
                return i + 1
            return -1
    if c == 91:  # [
        if depth >= _MAX_DEPTH:
            return -1
        i += 1
        if i < n and s[i] == 93:
            return i + 1
        while True:
            i = _jvalue(j, i, depth + 1)
            if i < 0 or i >= n:
                return -1
            if s[i] == 44:
                i += 1
                continue
            if s[i] == 93:  # ]
                return i + 1
            return -1
    if c == 45 or 48 <= c <= 57:
        return _jnumber(j, i)
    if c == 116:
        return _jliteral(j, i, b"true", 4)
    if c == 102:
        return _jliteral(j, i, b"false", 5)
    if c == 110:
        return _jliteral(j, i, b"null", 4)
    return -1


def canonical_json(object text):
    """``text`` (a str, or UTF-8 bytes or another buffer such as ``msgspec.Raw``) as UTF-8
    bytes when it is a JSON object or array written exactly as
    ``orjson.dumps(orjson.loads(text))`` would write it, else ``None`` (then parse it).

    Canonical here means: no whitespace outside strings, no repeated key in an object, strings
    in valid UTF-8 with only orjson's short escapes, integers of at most 18 digits and no
    fractions or exponents, at most 64 levels deep. Valid JSON outside that is not refused, only
    declined."""
    cdef JScan j
    cdef Py_buffer view
    cdef Py_ssize_t size
    cdef const char* data
    if type(text) is str:
        try:
            data = PyUnicode_AsUTF8AndSize(text, &size)
        except UnicodeEncodeError:  # a lone surrogate
            return None
        return _canonical(&j, data, size)
    try:
        PyObject_GetBuffer(text, &view, PyBUF_SIMPLE)
    except TypeError:  # neither text nor bytes
        return None
    try:
        return _canonical(&j, <const char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


cdef object _canonical(JScan* j, const char* data, Py_ssize_t size):
    if size < 2 or (data[0] != b'{' and data[0] != b'['):
        return None
    j.s = <const unsigned char*>data
    j.n = size
    j.nkeys = 0
    if _jvalue(j, 0, 0) != size:
        return None
    return PyBytes_FromStringAndSize(data, size)
