"""The test lanes: `make test-fast` (`-m "not integration"`) runs nothing that needs PostgreSQL,
Redis, the trained demo home or a server; `make test` runs everything.

Checked over the tests of this very session, whichever lane it is: every one that needs those
carries the marker that the fast lane deselects (tests/conftest.py adds it).
"""

import inspect
from pathlib import Path

# Fixtures (used directly or through other fixtures): the trained demo home, PostgreSQL, and
# a home built with the real feast CLI (too slow for the fast lane).
NEEDS_SERVICES = {"demo_home", "throwaway_postgres", "feast_cli"}
SERVICE_MODULES = {"test_http.py", "test_production_profile.py"}  # tests/service/
SERVICE_PORTS = (":5432", ":6379")  # PostgreSQL, Redis


def _needs_services(item) -> bool:
    params = getattr(item, "callspec", None)
    return bool(
        NEEDS_SERVICES & set(item.fixturenames)
        or (params is not None and params.params.get("sql_engine") == "postgresql")
        or (Path(item.path).parent.name == "service" and Path(item.path).name in SERVICE_MODULES)
        or any(port in inspect.getsource(item.function) for port in SERVICE_PORTS)
    )


def test_every_test_that_needs_services_is_marked_integration(request):
    unmarked = [
        item.nodeid
        for item in request.session.items
        if _needs_services(item) and item.get_closest_marker("integration") is None
    ]
    assert unmarked == []
