"""The built-in Dassl-compatible engine: the subset of Dassl 0.6.3 the project
uses, with the same names, defaults and printed formats. Import through
``dassl_compat``, not from here."""
