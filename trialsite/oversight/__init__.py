"""Oversight pages: the live CONSORT flow diagram and the record-status grid."""
