"""The compile report: its records, the terminal table, and the JSON / Markdown / HTML files with plots."""
