"""The spans table and the judge's trace judgements."""

from apps.detection.sql import judgements_table
from apps.spans.sql import spans_table

operations = [spans_table, judgements_table]
