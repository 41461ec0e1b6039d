"""The HTML pages: server-rendered over the services, CSRF on every form.

Importing this package imports every views module, so ``bp`` carries all the pages.
"""

from __future__ import annotations

from registry.http.web import views_auth, views_configs, views_detail, views_runs, views_workers
from registry.http.web.blueprint import bp

__all__ = ["bp", "views_auth", "views_configs", "views_detail", "views_runs", "views_workers"]
