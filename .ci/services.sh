#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL, Redis and NATS (JetStream) answer on their usual
# loopback ports, starting any that has stopped with the machine's own start commands.
set -euo pipefail

wait_for() { # name, test command…
    local name=$1
    shift
    for _ in $(seq 1 50); do
        if "$@" >/dev/null 2>&1; then
            echo "$name: up"
            return 0
        fi
        sleep 0.2
    done
    echo "$name: did not come up" >&2
    return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "PostgreSQL is down: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432

if ! port_open 6379; then
    echo "Redis is down: starting it"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis port_open 6379

if ! port_open 4222; then
    echo "NATS is down: starting it"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
wait_for NATS port_open 4222
