"""The use cases, one function each, that every face calls: the CLI now, the HTTP API next.

A face parses its input (options, a request body), calls one function here and presents
the result; the rules about *what* may happen live here or in the owners these functions
call, never in a face. Every function takes the store's :class:`~sqlalchemy.Engine` and the
instant to act at, raises a :class:`~legato.errors.LegatoError` of one of the four kinds
(``Invalid``, ``NotFound``, ``Conflict``, ``Forbidden``) and changes nothing when it does.

Modules: ``cycles`` (run a cycle), ``preview`` (what a cycle would do, writing nothing), ``review`` (the review queue), ``agents`` (trust ladder
controls and policy versions), ``imports`` (customers and events), ``suppressions`` (the
do-not-contact list), ``replies`` (what customers write back), ``delivery`` (send what is
due without a cycle), ``reports`` (lift, every outcome broken down, segment sizes).
"""
