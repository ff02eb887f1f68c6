"""Socket activation (issue 18): `sdps lmtp` and sdpsd take the listening
sockets systemd passes (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, from
descriptor 3 on), as a `.socket` unit would start them."""

import re
import socket
import subprocess
import time

from conftest import POP_PW
from sdps_harness import SANITIZE, TIMEOUT, Pop3, binary, message, sanitizer_report
from smtp_harness import LineClient, Lmtp
from test_lmtp_service import one_message


def listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_lmtp_takes_its_socket_from_systemd(sample):
    listener = listening_socket()
    port = listener.getsockname()[1]
    lmtp = Lmtp(sample, listen=None, pass_socket=listener)
    listener.close()
    try:
        assert f"listening on 127.0.0.1:{port} (from systemd, lmtp)" in lmtp.log()
        assert one_message(LineClient(port)) == 250
    finally:
        assert lmtp.stop() == 0
    assert len(sample.spool_list("sample").splitlines()) == 1


def test_sdpsd_takes_its_socket_from_systemd_instead_of_the_files_listeners(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="activated"))
    listener = listening_socket()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    log_path = sample.root / "sdpsd-activated.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=pop3 exec "$@"', "sh",
             str(binary("sdpsd")), "-c", str(sample.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: __import__("os").dup2(fd, 3), pass_fds=(fd, 3))
    listener.close()
    try:
        deadline = time.monotonic() + TIMEOUT
        while "listening on" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)
        text = log_path.read_text()
        assert f"listening on 127.0.0.1:{port} (from systemd)" in text
        assert len(re.findall("listening on", text)) == 1, "the file's listener (127.0.0.1:0) is not opened"
        c = Pop3(port)
        c.login("sample", POP_PW)
        assert b"Subject: activated" in c.retr(1)
        c.quit()
    finally:
        process.terminate()
        assert process.wait(TIMEOUT) == 0
    if SANITIZE:
        assert sanitizer_report(log_path.read_text()) is None, log_path.read_text()
