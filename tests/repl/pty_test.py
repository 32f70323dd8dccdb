#!/usr/bin/python3
"""pty_test.py KILN - `kiln repl` on a pseudo-terminal, as a person would use it:
the prompt, the continuation prompt, history (in the session and in the file
across sessions), Ctrl-C abandoning a line or a running :time, Tab completion,
and Ctrl-D quitting.  Prints "ok NAME" or "FAIL NAME: why" per check, then
"pty: done"."""
import os
import pty
import re
import select
import sys
import tempfile
import termios
import time

KILN = sys.argv[1]
TIMEOUT = 30.0  # seconds for one expected output; sanitizer builds are slow
UP = b"\x1b[A"
CTRL_C = b"\x03"
CTRL_D = b"\x04"


class Session:
    """The REPL on a pseudo-terminal, with an expect() over what it printed."""

    def __init__(self, env, args=("repl", "--device=ref")):
        self.editing = "--plain" not in args  # libedit puts the terminal in raw mode
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            for key in ("XDG_STATE_HOME", "EDITRC"):
                os.environ.pop(key, None)
            os.environ.update(env)
            os.environ["TERM"] = "xterm"
            os.execv(KILN, [KILN, *args])
        self.out = b""
        self.pos = 0  # expect() searches from here
        self.status = None

    def send(self, data, typing=True):
        """Types `data`.  With libedit, waits until it edits a line (the terminal
        is raw): a Ctrl-D typed ahead, while the terminal is still cooked, would
        be lost.  typing=False sends at once (Ctrl-C while a statement runs)."""
        end = time.time() + TIMEOUT
        while typing and self.editing and time.time() < end:
            try:
                if not termios.tcgetattr(self.fd)[3] & termios.ICANON:
                    break
            except termios.error:
                break
            self._read(0.01)
        os.write(self.fd, data)

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return None
        self.out += data
        return data != b""

    def expect(self, pattern, timeout=TIMEOUT):
        """Waits for `pattern` (bytes regex) after the last match; the match or None."""
        end = time.time() + timeout
        while True:
            m = re.compile(pattern, re.S).search(self.out, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = end - time.time()
            if left <= 0 or self._read(min(left, 0.1)) is None:
                return None

    def since(self, mark):
        return self.out[mark:]

    def wait(self, timeout=TIMEOUT):
        """Waits for the child to exit; its exit status, or None if it does not."""
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self._read(0.05)
        return None

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        os.close(self.fd)


failures = 0


def check(name, cond, s=None):
    global failures
    if cond:
        print(f"ok   pty: {name}")
    else:
        failures += 1
        tail = s.out[-600:] if s else b""
        print(f"FAIL pty: {name}\n    terminal output ends with: {tail!r}")
    sys.stdout.flush()
    return cond


def main():
    home = tempfile.mkdtemp(prefix="kiln-repl-home-")
    env = {"HOME": home}

    # ---- first session --------------------------------------------------------
    s = Session(env)
    try:
        check("banner and the prompt 'kiln> '", s.expect(rb"device ref.*\r\nkiln> $"), s)

        s.send(b"7 * 6\r")
        check("an expression prints its value and type", s.expect(rb"\r\n42\r\ni64\r\nkiln> "), s)

        s.send(b"x = (1 +\r")
        check("an open bracket gives the continuation prompt '...> '", s.expect(rb"\r\n\.\.\.> "), s)
        s.send(b"2)\r")
        s.expect(rb"kiln> ")
        s.send(b"x\r")
        check("the continued input is one statement", s.expect(rb"\r\n3\r\ni64\r\nkiln> "), s)

        s.send(UP + UP)
        check("up-arrow recalls earlier lines", s.expect(rb"2\)"), s)
        s.send(UP + UP)
        s.expect(rb"7 \* 6")
        s.send(b"\r")
        check("a recalled line runs again", s.expect(rb"\r\n42\r\ni64\r\nkiln> "), s)

        mark = len(s.out)
        s.send(b"this is not kiln")
        s.expect(rb"not kiln")
        s.send(CTRL_C)
        check("Ctrl-C abandons the line and shows a fresh prompt", s.expect(rb"\r\nkiln> $"), s)
        s.send(b"2 + 2\r")
        ran = s.expect(rb"\r\n4\r\ni64\r\nkiln> ")
        check("the abandoned line was not run", ran and b"error" not in s.since(mark), s)

        s.send(b"y = (1 +\r")
        s.expect(rb"\.\.\.> ")
        s.send(CTRL_C)
        s.expect(rb"kiln> ")
        s.send(b"y\r")
        check("Ctrl-C abandons a continued input too", s.expect(rb"undefined name 'y'.*kiln> ", ), s)

        s.send(b"sof\t")
        check("Tab completes a built-in", s.expect(rb"tmax\("), s)
        s.send(b"ones([2]))\r")
        check("the completed line runs", s.expect(rb"\[0\.5 0\.5\]\r\nf32\[2\]\r\nkiln> "), s)
        s.send(b":pre\t")
        check("Tab completes a command", s.expect(rb"cision "), s)
        s.send(b"\r")
        s.expect(rb"f32\r\nkiln> ")

        s.send(b"big = randn([1000, 1000])\r")
        s.expect(rb"kiln> ")
        s.send(b":time big @ big\r")
        time.sleep(0.5)
        s.send(CTRL_C, typing=False)
        check("Ctrl-C stops a running :time and returns to the prompt",
              s.expect(rb"interrupted.*kiln> ", timeout=120), s)
        s.send(b"x\r")
        check("bindings survive the interruption", s.expect(rb"\r\n3\r\ni64\r\nkiln> "), s)

        s.send(CTRL_D)
        check("Ctrl-D quits with status 0", s.wait() == 0, s)
    finally:
        s.kill()

    history = os.path.join(home, ".kiln_history")
    text = open(history, encoding="utf-8", errors="replace").read() if os.path.exists(history) else ""
    check("the history is saved in ~/.kiln_history", "7\\040*\\0406" in text or "7 * 6" in text)

    # ---- a second session recalls the first one's history ---------------------
    s = Session(env)
    try:
        s.expect(rb"kiln> ")
        s.send(UP)
        check("a new session recalls the saved history", s.expect(rb"x"), s)
        s.send(b"\r")
        check("the recalled line runs in the new session", s.expect(rb"undefined name 'x'"), s)
        s.send(b":quit\r")
        check(":quit quits with status 0", s.wait() == 0, s)
    finally:
        s.kill()

    # ---- $XDG_STATE_HOME decides where the history goes -----------------------
    state = os.path.join(home, "state")
    s = Session({"HOME": home, "XDG_STATE_HOME": state})
    try:
        s.expect(rb"kiln> ")
        s.send(b"1 + 1\r")
        s.expect(rb"kiln> ")
        s.send(CTRL_D)
        check("Ctrl-D quits a session with XDG_STATE_HOME set", s.wait() == 0, s)
    finally:
        s.kill()
    check("with XDG_STATE_HOME the history is $XDG_STATE_HOME/kiln/history",
          os.path.exists(os.path.join(state, "kiln", "history")), s)

    # ---- --plain: prompts, but no line editing --------------------------------
    s = Session(env, args=("repl", "--device=ref", "--plain"))
    try:
        s.expect(rb"kiln> ")
        s.send(b"this is not kiln")
        s.expect(rb"not kiln")
        s.send(CTRL_C)
        check("--plain: Ctrl-C abandons the line", s.expect(rb"\r\nkiln> $"), s)
        s.send(b"x = (1 +\r")
        check("--plain: the continuation prompt", s.expect(rb"\.\.\.> "), s)
        s.send(b"2)\r")
        s.expect(rb"kiln> ")
        s.send(b"x\r")
        check("--plain: statements run", s.expect(rb"\r\n3\r\ni64\r\nkiln> "), s)
        s.send(CTRL_D)
        check("--plain: Ctrl-D quits with status 0", s.wait() == 0, s)
    finally:
        s.kill()

    # ---- `kiln` alone on a terminal is the prompt ------------------------------
    s = Session(env, args=())
    try:
        check("'kiln' with no arguments on a terminal starts the prompt", s.expect(rb"kiln> "), s)
        s.send(CTRL_D)
        s.wait()
    finally:
        s.kill()

    print("pty: done")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
