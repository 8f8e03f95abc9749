#!/usr/bin/env python3
"""Issue 27's attacks (items 1-4) against a running `kadmit serve`, with a normal client beside
them. Run by scripts/attack.sh, which builds and starts the server; standard library only.

For each attack it prints what the attackers got (answered, refused, cut off), the normal
client's answers and p99 latency during the attack, the slowest /healthz, and the server's peak
RSS (VmHWM) so far.
"""

import argparse
import asyncio
import json
import ssl
import statistics
import time

SERVICE = "kadmit.kadmit.svc"
MAX_REQUEST = 3 * 1024 * 1024
COMPLIANT = ('{"name":"app","image":"registry.example.com/app:1","securityContext":'
             '{"allowPrivilegeEscalation":false,"runAsNonRoot":true,'
             '"seccompProfile":{"type":"RuntimeDefault"},"capabilities":{"drop":["ALL"]}}}')
META = '"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"}'


def review(uid, pod):
    return ('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":'
            '{"uid":"%s","kind":{"group":"","version":"v1","kind":"Pod"},'
            '"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default",'
            '"operation":"CREATE","userInfo":{"username":"alice"},"object":%s}}' % (uid, pod)).encode()


def filled(before, item, after):
    room = MAX_REQUEST - 1024 - len(before) - len(after)
    parts, size, i = [], 0, 0
    while True:
        nxt = item.replace("#", str(i))
        if size + len(nxt) + 1 > room:
            break
        parts.append(nxt)
        size += len(nxt) + 1
        i += 1
    return before + ",".join(parts) + after


def worst_cases():
    """The same shapes as tests/decoded_size.rs: 3 MiB reviews that decode as a Pod."""
    def in_spec(open_, close):
        return ('{%s,"spec":{"containers":[%s],%s' % (META, COMPLIANT, open_), close + "}}")

    def in_container(open_, close):
        return ('{%s,"spec":{"containers":[%s,{"name":"c",%s' % (META, COMPLIANT, open_),
                close + "}]}}")

    def in_meta(member):
        return ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","%s":{' % member,
                '}},"spec":{"containers":[%s]}}' % COMPLIANT)

    shapes = [
        ("containers", ('{%s,"spec":{"containers":[%s,' % (META, COMPLIANT), "]}}"), "{}"),
        ("initContainers", in_spec('"initContainers":[', "]"), "{}"),
        ("ephemeralContainers", in_spec('"ephemeralContainers":[', "]"), "{}"),
        ("volumes", in_spec('"volumes":[', "]"), '{"name":"v#","emptyDir":{}}'),
        ("empty volumes", in_spec('"volumes":[', "]"), "{}"),
        ("imagePullSecrets", in_spec('"imagePullSecrets":[', "]"), "{}"),
        ("sysctls", in_spec('"securityContext":{"sysctls":[', "]}"), "{}"),
        ("supplementalGroups", in_spec('"securityContext":{"supplementalGroups":[', "]}"), "0"),
        ("ports", in_container('"ports":[', "]"), "{}"),
        ("capabilities.drop", in_container('"securityContext":{"capabilities":{"drop":[', "]}}"), '""'),
        ("limits", in_container('"resources":{"limits":{', "}}"), '"r#":"1"'),
        ("httpHeaders", in_container('"livenessProbe":{"httpGet":{"port":80,"httpHeaders":[', "]}}"), "{}"),
        ("exec command", in_container('"lifecycle":{"postStart":{"exec":{"command":[', "]}}}"), '""'),
        ("annotations", in_meta("annotations"), '"a#":""'),
        ("labels", in_meta("labels"), '"l#":"v"'),
    ]
    cases = [(name, filled(before, item, after)) for name, (before, after), item in shapes]
    before, after = in_meta("annotations")
    before += '"a":"'
    after = '"' + after
    cases.append(("long annotation", before + "x" * (MAX_REQUEST - 2048 - len(before) - len(after)) + after))
    return cases


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


class Conn:
    """One HTTP/1.1 keep-alive connection over TLS."""

    def __init__(self, args):
        self.args = args
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(
            self.args.host, self.args.port, ssl=self.args.ctx, server_hostname=SERVICE)

    async def post(self, path, body):
        if self.writer is None:
            await self.open()
        head = ("POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                "content-length: %d\r\n\r\n" % (path, SERVICE, len(body))).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        return await read_response(self.reader)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length)
    return status, body


class Normal:
    """A normal client: small pod reviews, one after another, on a keep-alive connection."""

    def __init__(self, args):
        self.args = args
        self.latencies, self.failures = [], 0
        self.running = True
        self.body = review("normal", '{%s,"spec":{"containers":[%s]}}' % (META, COMPLIANT))

    async def run(self):
        conn = Conn(self.args)
        while self.running:
            sent = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(conn.post("/validate?timeout=10s", self.body), 11)
                if status == 200:
                    self.latencies.append(time.monotonic() - sent)
                else:
                    self.failures += 1
            except Exception:
                self.failures += 1
                conn.close()
            await asyncio.sleep(0.005)
        conn.close()

    def summary(self):
        if not self.latencies:
            return "normal client: 0 answered, %d failed" % self.failures
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else self.latencies * 99
        return "normal client: %d answered, %d failed, p50 %.1f ms, p99 %.1f ms" % (
            len(self.latencies), self.failures, statistics.median(self.latencies) * 1000, q[98] * 1000)


class Probe:
    """/healthz on the metrics port every 10 ms."""

    def __init__(self, args):
        self.args = args
        self.slowest, self.failures, self.running = 0.0, 0, True

    async def run(self):
        while self.running:
            sent = time.monotonic()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.args.host, self.args.metrics_port), 5)
                writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                await asyncio.wait_for(reader.read(), 5)
                writer.close()
                self.slowest = max(self.slowest, time.monotonic() - sent)
            except Exception:
                self.failures += 1
            await asyncio.sleep(0.01)


async def with_normal_client(args, name, attack):
    normal, probe = Normal(args), Probe(args)
    tasks = [asyncio.create_task(normal.run()), asyncio.create_task(probe.run())]
    await asyncio.sleep(0.2)
    started = time.monotonic()
    result = await attack()
    elapsed = time.monotonic() - started
    normal.running = probe.running = False
    await asyncio.gather(*tasks)
    print("== %s (%.1f s)" % (name, elapsed))
    print("  attackers: %s" % result)
    print("  %s" % normal.summary())
    print("  slowest /healthz: %.1f ms (%d failed)" % (probe.slowest * 1000, probe.failures))
    print("  kadmit peak RSS so far: %d MiB" % peak_rss_mib(args.pid))


async def item1_decoded_size(args):
    cases = worst_cases()[:16]

    async def one(i, name, pod):
        conn = Conn(args)
        endpoint = "/validate" if i % 2 == 0 else "/mutate"
        try:
            status, body = await conn.post(endpoint + "?timeout=10s", review("w%d" % i, pod))
        finally:
            conn.close()
        if status != 200:
            return "http %d" % status
        answer = json.loads(body)["response"]
        if answer["allowed"]:
            return "allowed"
        return "denied, too large" if "too large" in answer["status"]["message"] else "denied"

    outcomes = {}
    for _ in range(args.rounds):
        for outcome in await asyncio.gather(*(one(i, n, p) for i, (n, p) in enumerate(cases))):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return "%d worst-case reviews (%d at once): %s" % (sum(outcomes.values()), len(cases), outcomes)


async def item2_stalled_uploads(args):
    conns = []

    async def stall():
        conn = Conn(args)
        await conn.open()
        conn.writer.write(b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"content-length: 8388600\r\n\r\n{")
        await conn.writer.drain()
        conns.append(conn)

    results = await asyncio.gather(*(stall() for _ in range(args.stalled)), return_exceptions=True)
    opened = sum(1 for r in results if r is None)
    await asyncio.sleep(args.hold)

    async def outcome(conn):
        try:
            status, _ = await asyncio.wait_for(read_response(conn.reader), 10)
            return "http %d" % status
        except Exception:
            return "closed"
        finally:
            conn.close()

    outcomes = {}
    for o in await asyncio.gather(*(outcome(c) for c in conns)):
        outcomes[o] = outcomes.get(o, 0) + 1
    return "%d stalled uploads declaring 8 MiB opened, held %.0f s; then: %s" % (opened, args.hold, outcomes)


async def item4_connections(args):
    idle, plain = [], []

    async def tls_idle():
        reader, writer = await asyncio.open_connection(args.host, args.port, ssl=args.ctx,
                                                       server_hostname=SERVICE)
        idle.append((reader, writer))

    async def metrics_partial():
        reader, writer = await asyncio.open_connection(args.host, args.metrics_port)
        writer.write(b"GET /metr")
        await writer.drain()
        plain.append((reader, writer))

    tls = await asyncio.gather(*(tls_idle() for _ in range(args.idle)), return_exceptions=True)
    met = await asyncio.gather(*(metrics_partial() for _ in range(args.idle)), return_exceptions=True)
    await asyncio.sleep(args.hold)

    async def still_open(pair):
        reader, writer = pair
        try:
            data = await asyncio.wait_for(reader.read(1), 0.5)
            return "closed" if data == b"" else "answered"
        except asyncio.TimeoutError:
            return "open"
        except Exception:
            return "closed"
        finally:
            writer.close()

    def tally(items):
        out = {}
        for o in items:
            out[o] = out.get(o, 0) + 1
        return out

    idle_after = tally(await asyncio.gather(*(still_open(p) for p in idle)))
    plain_after = tally(await asyncio.gather(*(still_open(p) for p in plain)))
    return ("%d idle TLS connections to the webhook (%d refused at connect), after %.0f s: %s; "
            "%d partial `GET /metr` on the metrics port (%d refused at connect): %s" % (
                args.idle, sum(1 for r in tls if r is not None), args.hold, idle_after,
                args.idle, sum(1 for r in met if r is not None), plain_after))


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stalled", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=8.0)
    args = parser.parse_args()
    args.ctx = ssl.create_default_context(cafile=args.ca)
    print("kadmit peak RSS at start: %d MiB" % peak_rss_mib(args.pid))
    await with_normal_client(args, "item 1 and 3: worst-case reviews, 16 at once, both endpoints",
                             lambda: item1_decoded_size(args))
    await with_normal_client(args, "item 2: stalled uploads hold the body budget",
                             lambda: item2_stalled_uploads(args))
    await with_normal_client(args, "item 4: idle and half-sent connections on both ports",
                             lambda: item4_connections(args))


if __name__ == "__main__":
    asyncio.run(main())
