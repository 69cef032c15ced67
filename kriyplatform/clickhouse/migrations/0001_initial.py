"""Spans, the trace index, arrivals, ingest usage and trace judgements."""

from apps.detection.sql import judgements_table
from apps.spans.sql import arrivals_table, spans_table, traces_table, usage_table

operations = [spans_table, traces_table, arrivals_table, usage_table, judgements_table]
