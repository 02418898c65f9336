# Sourced by the bench and test scripts that start `ordermesh up` on ports of their own.
#
# A base port whose four ports (gateway, users, orders, catalog) are free on 127.0.0.1, below the
# kernel's ephemeral range (so the load tool's own client sockets cannot take them meanwhile).
free_port_base() {
    python3 - <<'EOF'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(500):
    base, socks = random.randrange(10000, max(10004, low - 4)), []
    try:
        for p in range(base, base + 4):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", p))
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
else:
    raise SystemExit("no four free ports in a row")
EOF
}
