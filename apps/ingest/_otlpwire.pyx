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
