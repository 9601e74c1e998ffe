"""The web app: server-rendered pages for households and the energy company, in the same service
as the JSON API and calling the same market functions (one rule, two faces).

Modules: :mod:`~web.app` (the service ``smartbrum serve`` runs), :mod:`~web.sessions` (the session
cookie, sign-in redirects, CSRF), :mod:`~web.account_pages`, :mod:`~web.household_pages`,
:mod:`~web.operator_pages`, :mod:`~web.charts` (SVG charts), :mod:`~web.format` (en-GB display),
:mod:`~web.rendering` (the Jinja2 templates in ``templates/``; ``static/`` holds the stylesheet).

May import :mod:`api` (deps, settings, problems, the app it extends), :mod:`market` and
:mod:`optimiser`; only the command line imports it.
"""
