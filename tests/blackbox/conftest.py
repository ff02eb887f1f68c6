"""Fixtures shared by the black-box tests.

    site    a fresh temporary installation (Site); every server it started is
            stopped and the folder removed at the end, pass or fail
    sample  `site` with the customer host `sample`: POP3 password POP_PW
            from anywhere, dialup password DIALUP_PW from 127.0.0.2
    server  a running sdpsd on `sample`'s site
"""

import sys

import pytest

sys.dont_write_bytecode = True

from sdps_harness import Site, binary  # noqa: E402

POP_PW = "pop secret"        # spaces on purpose: PASS takes the rest of the line
DIALUP_PW = "dial-up secret"
DIALUP_IP = "127.0.0.2"
OTHER_IP = "127.0.0.3"


def pytest_configure(config):
    config.addinivalue_line("markers", "site_options(**kw): options for the site fixture's Site()")


@pytest.fixture
def site(request):
    missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
    # Not a skip: a missing build is a broken test run.
    assert not missing, f"{', '.join(missing)} not built in {binary('').parent} (set SDPS_BUILD_DIR)"
    marker = request.node.get_closest_marker("site_options")
    s = Site(**(marker.kwargs if marker else {}))
    yield s
    s.close()


@pytest.fixture
def sample(site):
    site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP])
    return site


@pytest.fixture
def server(sample):
    return sample.start()
