"""SchemaGen: a TFMD Schema inferred from statistics, or imported from a curated file.

``executor.run`` infers types, presence, shapes/value counts, string domains
and non-negative numeric domains TFDV-style from one split's statistics, or
(like TFX's ImportSchemaGen) copies a user-supplied ``schema.pbtxt``; it
writes ``schema.pbtxt`` plus a Markdown report.
"""
