"""impasto serve's costs, measured against the command on the same job, side by side:
the server's memory when idle, the time from a submission to its first live picture, and a
job's time from submission to done against `impasto stylize` (process start, weights, job,
PNG) with the same settings. Python's standard library only.

    python3 benches/serve_timing.py --bin target/release/impasto --rounds 3

The shipped weights and pictures; CPU engine unless --engine says otherwise.
"""

import http.client
import json
import subprocess
import tempfile
import time

from side_by_side import CONTENT as content, SHALLOW, STYLE as style, WEIGHTS, flags, parse_args

LAYERS = flags(SHALLOW)


def multipart(fields):
    boundary = "impasto-bench-boundary"
    body = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def main():
    a = parse_args(__doc__)
    weights = str(WEIGHTS)
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:0", "--data", f"{tmp}/data",
                                   "--engine", a.engine, "--weights", weights] + LAYERS,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            addr = server.stdout.readline().strip().removeprefix("http://").rstrip("/")
            time.sleep(1)
            print(f"idle server: {rss_mib(server.pid):.1f} MiB resident")
            print(f"{a.size} px, {a.steps} steps, engine {a.engine}: seconds")
            print("round  submit->first picture  submit->done  impasto stylize")
            kind, body = multipart([("content", "c.jpg", content.read_bytes()),
                                    ("style", "s.jpg", style.read_bytes()),
                                    ("settings", "", json.dumps({"size": a.size, "steps": a.steps}).encode())])
            for r in range(a.rounds):
                host, port = addr.split(":")
                c = http.client.HTTPConnection(host, int(port))
                t0 = time.perf_counter()
                c.request("POST", "/api/jobs", body, {"Content-Type": kind})
                job = json.loads(c.getresponse().read())["id"]
                events = http.client.HTTPConnection(host, int(port))
                events.request("GET", f"/api/jobs/{job}/events")
                stream = events.getresponse()
                first = done = None
                event = None
                while done is None:
                    line = stream.fp.readline().decode().strip()
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "image" and first is None:
                        first = time.perf_counter() - t0
                    elif line.startswith("data:") and event == "status":
                        status = json.loads(line.split(":", 1)[1])["status"]
                        if status in ("done", "failed", "cancelled"):
                            assert status == "done", line
                            done = time.perf_counter() - t0
                t0 = time.perf_counter()
                subprocess.run([a.bin, "stylize", "--content", str(content), "--style", str(style),
                                "--weights", weights, "--engine", a.engine, "--size", str(a.size),
                                "--steps", str(a.steps), "--output", f"{tmp}/out.png"] + LAYERS,
                               check=True, capture_output=True)
                cli = time.perf_counter() - t0
                print(f"{r:5d}  {first:21.2f}  {done:12.2f}  {cli:15.2f}")
            print(f"after the jobs: {rss_mib(server.pid):.1f} MiB resident")
        finally:
            server.kill()


if __name__ == "__main__":
    main()
