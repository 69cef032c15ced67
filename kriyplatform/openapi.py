"""The ingest endpoints in the OpenAPI schema (they are plain Django views on the fast path)."""

from __future__ import annotations

from typing import Any

_ATTR_VALUE = {
    "oneOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {
            "type": "array",
            "items": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
        },
    ]
}
_TIME = {
    "oneOf": [
        {"type": "string", "format": "date-time", "description": "RFC 3339 with a UTC offset"},
        {"type": "integer", "minimum": 0, "description": "Unix nanoseconds"},
    ]
}
NATIVE_SPAN = {
    "type": "object",
    "description": "A native span (spans.md §1).",
    "required": ["trace_id", "span_id", "agent", "name", "start_time", "end_time"],
    "properties": {
        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "parent_span_id": {"type": "string", "nullable": True, "pattern": "^[0-9a-fA-F]{16}$"},
        "session_id": {"type": "string", "nullable": True, "maxLength": 256},
        "agent": {"type": "string", "minLength": 1, "maxLength": 128},
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "kind": {
            "type": "string",
            "enum": ["agent", "llm", "tool", "retrieval", "handoff", "step"],
            "default": "step",
        },
        "start_time": _TIME,
        "end_time": _TIME,
        "status": {"type": "string", "enum": ["ok", "error", "unset"], "default": "unset"},
        "status_message": {"type": "string", "nullable": True, "maxLength": 4096},
        "input": {"description": "any JSON"},
        "output": {"description": "any JSON"},
        "attributes": {"type": "object", "additionalProperties": _ATTR_VALUE},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "time"],
                "properties": {
                    "name": {"type": "string"},
                    "time": _TIME,
                    "attributes": {"type": "object", "additionalProperties": _ATTR_VALUE},
                },
            },
        },
    },
}
_INGEST_RESULT = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "span_id": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": _ERROR}}}


def add_ingest_paths(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["NativeSpan"] = NATIVE_SPAN
    result["paths"]["/api/v1/spans"] = {
        "post": {
            "operationId": "spans_ingest",
            "summary": "Ingest native spans (api.md); acknowledged means stored",
            "tags": ["ingest"],
            "security": [{"ApiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["spans"],
                            "properties": {
                                "spans": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/NativeSpan"},
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "at least one span stored",
                    "content": {"application/json": {"schema": _INGEST_RESULT}},
                },
                "400": {
                    "description": "no valid span, or a body that is not JSON",
                    "content": {"application/json": {"schema": _INGEST_RESULT}},
                },
                "401": _err("no or unknown key"),
                "403": _err("revoked key or missing ingest scope"),
                "413": _err("body or span count over the limit"),
                "415": _err("unsupported content type or encoding"),
                "429": _err("rate limit or monthly quota spent; see Retry-After"),
                "503": _err("span store unavailable; nothing stored, resend after Retry-After"),
            },
        }
    }
    result["paths"]["/v1/traces"] = {
        "post": {
            "operationId": "otlp_traces_ingest",
            "summary": "OTLP/HTTP ExportTraceServiceRequest (protobuf or JSON, optionally gzip/deflate)",
            "tags": ["ingest"],
            "security": [{"ApiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "description": "OTLP JSON (hex ids, integer enums)",
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "ExportTraceServiceResponse (partial_success when some spans were rejected)"
                },
                "400": {"description": "google.rpc.Status: undecodable body or no valid span"},
                "401": {"description": "google.rpc.Status"},
                "403": {"description": "google.rpc.Status"},
                "413": {"description": "google.rpc.Status"},
                "415": {"description": "google.rpc.Status"},
                "429": {"description": "google.rpc.Status; Retry-After"},
                "503": {"description": "google.rpc.Status; Retry-After"},
            },
        }
    }
    return result
