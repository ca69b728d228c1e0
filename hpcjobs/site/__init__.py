"""Tools for site admins: validate, schema, discover, show and the field reference.

Each module is imported only by the ``hpcjobs site`` command that needs it.
"""
