"""The controller: one detached Ray actor on the head that owns boosts, shared
allocations, the offload policy and the memory pool's directory.

It lives in its own namespace (``grid_ops_control``) and outlives the processes that
talk to it. The operator's CLI reaches it through ``grid_ops.runtime.client`` run on the
head over SSH, which speaks to the actor's Unix socket (no Ray driver per call); code on
the cluster calls its methods as a normal actor. Its state is written to
``<remote_root>/state/controller/state.json`` on the head after each change, and read
back when it starts, so boosts and the offload policy survive a head restart.

``python -m grid_ops.runtime.controller ensure --settings JSON`` (run on the head in the
background by ``cluster start``, through the grid_ray role) starts it when it is missing
or runs other code or settings, and prints ``{"changed": …}``; ``ensure.json`` in the
state dir says whether a start is under way, done or failed (the client waits for one
under way).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any

from grid_ops import layout
from grid_ops.runtime import (
    jobboard,
    jobqueue,
    nodes,
    offload,
    pool,
    private,
    protocol,
    reservations,
    store,
    users,
)
from grid_ops.runtime.jobs import Runner
from grid_ops.runtime.nodes import Conflicting, Denied, Missing, Refused
from grid_ops.runtime.taskstats import Totals

NAMESPACE = layout.CONTROLLER_NAMESPACE
ACTOR_NAME = layout.CONTROLLER_ACTOR
KEEP_RELEASED = 100
TICK = 1.0


def code_version() -> str:
    """A digest of the runtime's source: a controller running other code is replaced."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class Controller:
    def __init__(self, state_dir: str, settings: dict[str, Any]) -> None:
        self.dir = protocol.private_state(Path(state_dir))
        self.lock = threading.RLock()
        self.state = store.load(self.dir)
        self.state["settings"] = settings
        if not self.state["offload"].get("policy"):
            default = settings.get("offload") or {}
            self.state["offload"]["policy"] = offload.policy(
                bool(default.get("enabled", False)), default.get("thresholds")
            )
        self.started_at = time.time()
        self.totals = Totals()
        self.sampler = offload.Sampler(self._nvidia_smi)
        self._save()
        self._restore()
        self.board = jobboard.Board(self.dir, self._runner())
        self.tokens = users.Tokens(self.dir)
        self._server = self._serve()
        threading.Thread(target=self._maintain, name="grid-maintain", daemon=True).start()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.state["settings"])

    def _names(self) -> list[str]:
        return list(self.settings.get("nodes") or [])

    def _views(self) -> dict[str, nodes.NodeView]:
        return nodes.current(self._names())

    def _save(self) -> None:
        store.save(self.dir, self.state)

    def _runner(self) -> Runner:
        """Ray Jobs on this head, for the job queue."""
        import ray

        root = os.environ.get("GRID_OPS_ROOT") or str(self.dir.parents[1])
        port = int(self.settings.get("dashboard_port") or 8265)
        return Runner(
            port,
            root,
            ray.get_runtime_context().gcs_address,
            self._nvidia_smi,
        )

    def _nvidia_smi(self) -> str:
        """health_check.nvidia_smi of the settings now ("" for the one on PATH)."""
        return str(self.settings.get("nvidia_smi") or "")

    def _serve(self) -> socketserver.BaseServer:
        path = protocol.socket_path(self.dir)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private.private_dir(path.parent)
        path.unlink(missing_ok=True)
        controller = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    protocol.check_peer(self.request)
                except OSError:
                    return  # not this user: no answer at all
                try:
                    request = protocol.read_line(self.rfile)
                    payload = protocol.read_exact(self.rfile, int(request.get("payload") or 0))
                    op = str(request["op"])
                    caller = controller.identify(op, request.get("auth"))
                    result, data = controller.call(op, request.get("args") or {}, payload, caller)
                    protocol.write_message(self.wfile, {"ok": True, "result": result}, data)
                except Refused as exc:
                    answer = {"ok": False, "error": str(exc), "hint": exc.hint}
                    if isinstance(exc, Missing):
                        answer["missing"] = True
                    if isinstance(exc, Conflicting):
                        answer["conflict"] = True
                    if isinstance(exc, Denied):
                        answer["forbidden"] = True
                    protocol.write_message(self.wfile, answer)
                except Exception as exc:  # answer the caller; the controller stays up
                    protocol.write_message(
                        self.wfile, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    )

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        old = os.umask(0o177)
        try:
            server = Server(str(path), Handler)
        finally:
            os.umask(old)
        threading.Thread(target=server.serve_forever, name="grid-socket", daemon=True).start()
        return server

    def _maintain(self) -> None:
        last_sample = 0.0
        while True:
            time.sleep(TICK)
            try:
                self._expire()
                interval = float((self.settings.get("offload") or {}).get("check_interval", 5))
                if time.time() - last_sample >= interval:
                    self.sampler.sample()
                    last_sample = time.time()
                self._retry_pending()
            except Exception:  # keep maintaining; each step is retried next tick
                pass
            with contextlib.suppress(Exception):  # Ray Jobs not up yet: next tick
                self._jobs_tick()

    def _jobs_tick(self) -> None:
        policy = self.settings.get("jobs")
        if not policy:  # not configured yet: 'cluster start' hands the settings in
            return
        board = self.board
        board.keep, board.keep_days = int(policy["keep"]), float(policy["keep_days"])
        board.head = str(self.settings.get("head") or "")
        board.quotas = {
            name: jobqueue.Quota.from_json(user.get("quota"))
            for name, user in users.configured(self.settings).items()
        }
        if board.cleanup:
            self._clean_jobs()
        if not board.live():
            return
        board.tick(
            self._views,
            time.time(),
            float(policy["reserve_after"]),
            float(policy["usage_half_life"]),
        )

    def _clean_jobs(self) -> None:
        """Remove the files of jobs the queue no longer keeps (jobs/<id>/ under each
        node's remote root: workdir, checkpoints, logs), on the nodes that are up."""
        import ray

        views = self._views()
        work = []
        for job_id, names in list(self.board.cleanup.items()):
            for name in names:
                view = views.get(name)
                if view is None or not view.alive:
                    continue
                task = ray.remote(num_cpus=0, max_retries=0)(_remove_job_files)
                work.append((job_id, name, task.options(resources=layout.pin(name)).remote(job_id)))
        for job_id, name, ref in work:
            with contextlib.suppress(Exception):  # not this time: the next tick retries
                if ray.get(ref, timeout=30):
                    self.board.cleaned(job_id, name)

    # -- actor methods -------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        return self._ping()

    def call(
        self,
        op: str,
        args: dict[str, Any],
        payload: bytes = b"",
        caller: users.Caller = users.CLUSTER_CODE,
    ) -> tuple[Any, bytes]:
        """Carry out ``op`` for ``caller`` (an actor call: the cluster's own code)."""
        handler = OPS.get(op)
        if handler is None:
            raise Refused(f"Unknown controller operation '{op}'.")
        if op in ADMIN_OPS and not caller.admin:
            raise Denied(f"Only an admin may {ADMIN_OPS[op]}; you are {caller.name}.")
        answer: tuple[Any, bytes] = handler(self, args, payload, caller)
        return answer

    def identify(self, op: str, auth: object) -> users.Caller:
        """Who sent a socket request with ``auth`` (``{"token", "user"}``: the caller's
        token, and who the operator's machine says it is). A request without ``auth`` is
        the head's own code (``controller ensure`` from 'cluster start'); the grid-ops
        client always sends one. A first admin's token may be asked for without a token
        (users.may_issue)."""
        if op in OPEN_OPS or auth is None:
            return users.CLUSTER_CODE
        given = auth if isinstance(auth, dict) else {}
        token, claimed = given.get("token"), given.get("user")
        try:
            return users.identify(
                self.settings,
                self.tokens,
                token if isinstance(token, str) else None,
                claimed if isinstance(claimed, str) else "",
            )
        except Refused:
            if op != "user-token":
                raise
            return users.Caller("", users.MEMBER)

    def record_tasks(self, report: dict[str, Any]) -> None:
        with self.lock:
            self.totals.add(report)

    def offload_target(self, task: str, need: dict[str, float]) -> str | None:
        """The worker a task that allows offloading should go to now, or None (stay)."""
        with self.lock:
            policy = self.state["offload"]["policy"]
            if not policy.get("enabled"):
                return None
            reasons = offload.over(self.sampler.values, policy["thresholds"])
            if not reasons:
                return None
            head = self.settings.get("head")
            views = self._views()
            fitting = {
                v.name: v.free
                for v in views.values()
                if v.alive and v.name != head and nodes.fits(v.free, need)
            }
            target = offload.least_loaded(fitting, {v.name: v.total for v in views.values()})
            reason = "; ".join(reasons)
            if target is None:
                reason += "; no worker has room, kept on the head"
            decision = {
                "time": round(time.time(), 3),
                "task": task,
                "reason": reason,
                "node": target,
            }
            decisions = self.state["offload"]["decisions"]
            decisions.append(decision)
            del decisions[: -offload.KEEP_DECISIONS]
            self._save()
            return views[target].node_id if target else None

    def boost_group(self, boost_id: str) -> dict[str, Any]:
        with self.lock:
            record = self._reservation(boost_id)
            return {
                "pg": record["pg"],
                "resource": record["resource"],
                "amount": record["amount"],
                "node": record["node"],
            }

    def pool_plan(self, key: str, size: int, replicas: int, node: str | None) -> list[str]:
        pool.check_key(key)  # other Ray drivers call this directly: check here too
        with self.lock:
            views = self._views()
            if node is not None:
                nodes.require(views, node)
            capacity = int(self.settings.get("pool_capacity", 0))
            chosen = pool.choose(views, self.state["pool"], key, size, replicas, capacity, node)
            for name in chosen:
                pool.ensure_actor(views[name], capacity)
            return chosen

    def pool_commit(
        self, key: str, size: int, digest: str, held: list[str], owner: str = ""
    ) -> None:
        pool.check_key(key)
        with self.lock:
            old = self.state["pool"].get(key)
            self.state["pool"][key] = {
                "size": size,
                "sha256": digest,
                "nodes": held,
                "stored_at": round(time.time(), 3),
                "owner": owner,
            }
            self._save()
        for stale in set((old or {}).get("nodes", [])) - set(held):
            with contextlib.suppress(ValueError):
                pool.actor(stale).delete.remote(key)

    def pool_locate(self, key: str) -> list[str]:
        pool.check_key(key)
        entry = self.state["pool"].get(key)
        if entry is None:
            raise self._unknown_key(key)
        views = self._views()
        return sorted(entry["nodes"], key=lambda n: not (views.get(n) and views[n].alive))

    # -- reservations --------------------------------------------------------------------

    def _reservation(self, rid: str) -> dict[str, Any]:
        record = self.state["reservations"].get(rid)
        if record is not None:
            return dict(record)
        gone = next((r for r in self.state["released"] if r["id"] == rid), None)
        if gone is not None:
            raise Missing(
                f"'{rid}' was already released ({gone.get('state', 'released')}).",
                "See the live ones with 'status'.",
            )
        raise Missing(f"No boost or allocation '{rid}'.", "See the live ones with 'status'.")

    def _reserve(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        kind = str(args.get("kind", "boost"))
        resource = str(args.get("resource", ""))
        amount = float(args.get("amount", 0))
        priority = str(args.get("priority") or "normal")
        reservations.validate(resource, amount, priority)
        if kind == "share" and not self.settings.get("sharing", True):
            raise Refused(
                "Resource sharing is turned off for this cluster (resource_sharing.enabled "
                "is false in its config).",
                "Set resource_sharing.enabled: true and run 'grid-ops cluster start', or "
                "reserve on a named node with 'grid-ops boost request'.",
            )
        ttl = args.get("ttl")
        with self.lock:
            views = self._views()
            if kind == "boost" or args.get("node"):
                view = nodes.require(views, str(args.get("node")))
                reservations.check_free(view, resource, amount)
            else:
                fraction = float(self.settings.get("max_share_fraction", 0.5))
                view = reservations.pick_shared_node(
                    views, resource, amount, fraction, self._shared_by_node(resource)
                )
            now = time.time()
            record = {
                "id": reservations.new_id(kind),
                "kind": kind,
                "node": view.name,
                "resource": resource,
                "amount": amount,
                "priority": priority,
                "created_at": round(now, 3),
                "expires_at": round(now + float(ttl), 3) if ttl else None,
                "state": "active",
                "owner": caller.name,
            }
            record["pg"] = reservations.place(record)
            self.state["reservations"][record["id"]] = record
            self._save()
            return reservations.public(record, views), b""

    def _shared_by_node(self, resource: str) -> dict[str, float]:
        held: dict[str, float] = {}
        for r in self.state["reservations"].values():
            if r["kind"] == "share" and r["resource"] == resource:
                held[r["node"]] = held.get(r["node"], 0.0) + float(r["amount"])
        return held

    def _release_record(self, rid: str, why: str) -> dict[str, Any]:
        record = self.state["reservations"].pop(rid)
        reservations.remove(record.get("pg"))
        record["state"] = why
        record["released_at"] = round(time.time(), 3)
        self.state["released"].append(record)
        del self.state["released"][:-KEEP_RELEASED]
        self._save()
        return reservations.public(record)

    def _release(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        rid = str(args.get("id", ""))
        with self.lock:
            record = self._reservation(rid)
            kind = args.get("kind")
            if kind and record["kind"] != kind:
                raise Refused(
                    f"'{rid}' is a {record['kind']}, not a {kind}.",
                    f"Release it with 'grid-ops {_command(record['kind'])} release'.",
                )
            what = f"{'Boost' if record['kind'] == 'boost' else 'Allocation'} {rid}"
            users.check_owner(caller, str(record.get("owner") or ""), what, "release")
            return self._release_record(rid, "released"), b""

    def _list(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        kind = args.get("kind")
        with self.lock:
            views = self._views()
            rows = []
            for record in self.state["reservations"].values():
                if kind and record["kind"] != kind:
                    continue
                placed = reservations.pg_state(record.get("pg"))
                if record["state"] == "active" and placed in ("MISSING", "REMOVED"):
                    record["state"] = "pending"  # the cluster lost it: placed again by _maintain
                rows.append(reservations.public(record, views, placed))
        return sorted(rows, key=lambda r: r["created_at"]), b""

    def _expire(self) -> None:
        with self.lock:
            for rid, record in list(self.state["reservations"].items()):
                if reservations.expired(record):
                    self._release_record(rid, "expired")

    def _restore(self) -> None:
        """After a restart: reservations whose group is gone are placed again."""
        with self.lock:
            for record in self.state["reservations"].values():
                if reservations.pg_state(record.get("pg")) in ("MISSING", "REMOVED"):
                    record["state"] = "pending"
            self._save()
        self._retry_pending()

    def _retry_pending(self) -> None:
        with self.lock:
            pending = [r for r in self.state["reservations"].values() if r["state"] == "pending"]
            if not pending:
                return
            views = self._views()
            for record in pending:
                view = views.get(record["node"])
                if view is None or not view.alive:
                    continue
                try:
                    record["pg"] = reservations.place(record, timeout=5)
                    record["state"] = "active"
                except Refused:
                    continue
            self._save()

    # -- offload -------------------------------------------------------------------------

    def _offload_set(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        with self.lock:
            current = self.state["offload"]["policy"]
            thresholds = {**current["thresholds"], **(args.get("thresholds") or {})}
            self.state["offload"]["policy"] = offload.policy(bool(args["enabled"]), thresholds)
            self._save()
        self.sampler.sample()
        return self._offload_status({}, b"")

    def _offload_status(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        with self.lock:
            policy = self.state["offload"]["policy"]
            recent = self.state["offload"]["decisions"][-int(args.get("recent", 20)) :]
            return {
                "enabled": policy["enabled"],
                "thresholds": policy["thresholds"],
                "head": self.settings.get("head"),
                "pressure": dict(self.sampler.values),
                "sampled_at": self.sampler.at,
                "decisions": list(recent),
            }, b""

    # -- memory pool ---------------------------------------------------------------------

    def _unknown_key(self, key: str) -> Refused:
        known = ", ".join(sorted(self.state["pool"])[:10]) or "none"
        return Missing(f"No object '{key}' in the memory pool.", f"Stored keys: {known}.")

    def _memory_store(
        self, args: dict[str, Any], payload: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        key = pool.check_key(args.get("key"))
        node = args.get("node")
        with self.lock:
            old = self.state["pool"].get(key)
        if old is not None:
            users.check_owner(caller, str(old.get("owner") or ""), f"Object '{key}'", "replace")
        plan = self.pool_plan(key, len(payload), int(args.get("replicas", 1)), node)
        pool.put_all([pool.actor(n) for n in plan], key, payload)
        self.pool_commit(key, len(payload), pool.checksum(payload), plan, caller.name)
        return {"key": key, "size": len(payload), "nodes": plan}, b""

    def _memory_retrieve(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        key = pool.check_key(args.get("key"))
        data, node = pool.get_first(self.pool_locate(key), key)
        digest = self.state["pool"][key].get("sha256")
        if digest and pool.checksum(data) != digest:
            raise Refused(f"Object '{key}' on {node} does not match its checksum.")
        return {"key": key, "size": len(data), "node": node}, data

    def _memory_list(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        with self.lock:
            directory = {k: dict(v) for k, v in self.state["pool"].items()}
        held = pool.holders(sorted({n for e in directory.values() for n in e["nodes"]}))
        rows = []
        for key, entry in sorted(directory.items()):
            live = [n for n in entry["nodes"] if key in held.get(n, {})]
            owner = entry.get("owner") or ""
            rows.append(
                {"key": key, "size": entry["size"], "nodes": live, "lost": not live, "owner": owner}
            )
        return rows, b""

    def _memory_delete(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        key = pool.check_key(args.get("key"))
        with self.lock:
            entry = self.state["pool"].get(key)
            if entry is None:
                raise self._unknown_key(key)
            users.check_owner(caller, str(entry.get("owner") or ""), f"Object '{key}'", "delete")
            del self.state["pool"][key]
            self._save()
        for node in entry["nodes"]:
            try:
                pool.actor(node).delete.remote(key)
            except ValueError:
                continue
        return {"key": key, "deleted": True, "nodes": entry["nodes"]}, b""

    # -- the job queue -----------------------------------------------------------------

    def _job_submit(
        self, args: dict[str, Any], payload: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        from grid_ops.runtime.jobs import parse_env

        try:
            env = parse_env(payload.decode("utf-8")) if payload else {}
        except ValueError as exc:
            raise Refused(f"The job's environment is not valid: {exc}.") from None
        spec = args.get("job")
        if not isinstance(spec, dict):
            raise Refused("job-submit needs the job.")
        # Who submits is who calls (a user's token, else the operator's login name),
        # never what the job says.
        spec = {**spec, "submitter": caller.name or "unknown"}
        job = self.board.submit(spec, env, time.time())
        with contextlib.suppress(Exception):  # it starts now if it fits (else next tick)
            self._jobs_tick()
        return self.board.record(self.board.find(job.id)), b""

    def _job_list(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        held = self.board.reservation
        return {
            "jobs": self.board.rows(),
            "reservation": {"job": held.job_id, "nodes": list(held.nodes)} if held else None,
            "problems": list(self.board.problems),
        }, b""

    def _job_get(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        return self.board.record(self.board.find(str(args.get("name") or ""))), b""

    def _job_cancel(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        job = self.board.find(str(args.get("name") or ""))
        users.check_owner(caller, job.submitter, f"Job {job.name or job.id}", "cancel")
        return self.board.cancel(job.id).to_json(), b""

    # -- users ---------------------------------------------------------------------------

    def _user_token(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        name = str(args.get("name") or "")
        with self.lock:
            users.may_issue(self.settings, self.tokens, caller, name)
            token = self.tokens.issue(name)
        role = users.configured(self.settings)[name].get("role")
        return {"name": name, "role": role, "token": token}, b""

    def _whoami(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        return {"name": caller.name, "role": caller.role}, b""

    def _users(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        """The configured users, whether each has a token, and each one's running GPUs
        and GPU-hours of the last 7 days (what their quota counts)."""
        used = jobqueue.per_user(self.board.records(), time.time())
        have = set(self.tokens.holders())
        rows = []
        for name, user in sorted(users.configured(self.settings).items()):
            quota = user.get("quota") or {}
            mine = used.get(name, {})
            rows.append(
                {
                    "name": name,
                    "role": user.get("role"),
                    "token": name in have,
                    "gpus_running": mine.get("gpus_running", 0.0),
                    "gpu_hours_week": mine.get("gpu_hours_week", 0.0),
                    "quota": {
                        "gpus": quota.get("gpus"),
                        "gpu_hours_per_week": quota.get("gpu_hours_per_week"),
                    },
                }
            )
        return rows, b""

    def _usage(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        """GPU- and CPU-hours from the queue's attempts since ``since`` (epoch seconds),
        by ``by`` (user or node)."""
        by = str(args.get("by") or "user")
        if by not in jobqueue.USAGE_KEYS:
            raise Refused(f"Usage by '{by}' is not known.", "Use: user or node.")
        now = time.time()
        since = float(args.get("since") or 0.0)
        table = jobqueue.usage_table(self.board.records(), since, now, by)
        return {"since": since, "until": now, "by": by, "rows": table}, b""

    # -- status and metrics --------------------------------------------------------------

    def _ping(self) -> dict[str, Any]:
        return {
            "version": self.settings.get("version"),
            "pid": os.getpid(),
            "started_at": self.started_at,
        }

    def _metrics(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        now = time.time()
        jobs = self.board.records()
        with self.lock:
            per_node = pool.used_by_node(self.state["pool"])
            return {
                "active_tasks": self.totals.active(),
                "tasks": self.totals.to_json(),
                "boosts_active": sum(
                    1 for r in self.state["reservations"].values() if r["kind"] == "boost"
                ),
                "pool_bytes": {n: per_node.get(n, 0) for n in sorted(self._names())},
                "users": jobqueue.per_user(jobs, now),
            }, b""

    # -- lifecycle -----------------------------------------------------------------------

    def _configure(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        """Take new settings in place (same code): a node added or removed by 'apply'
        needs no controller restart, and boosts and the pool directory stay as they are."""
        settings = args.get("settings")
        if not isinstance(settings, dict):
            raise Refused("configure needs the controller's settings.")
        version = settings_version(settings)
        with self.lock:
            changed = self.settings.get("version") != version
            capacity = self.settings.get("pool_capacity")
            self.state["settings"] = {**settings, "version": version}
            self._save()
        if settings.get("pool_capacity") != capacity:  # the stores on the nodes follow
            for name in self._names():
                with contextlib.suppress(ValueError):
                    pool.actor(name).resize.remote(int(settings.get("pool_capacity") or 0))
        return {"changed": changed, "version": version}, b""

    def _evacuate(
        self, args: dict[str, Any], _: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        """Before ``node`` leaves: copy each pool object it holds to a node that stays
        (when no other live replica exists on one), move its shares, release its boosts
        (a boost is asked for on a named node). Returns what happened to each."""
        node = str(args.get("node", ""))
        leaving = set(args.get("leaving") or []) | {node}
        moved: list[dict[str, Any]] = []
        with self.lock:
            views = {k: v for k, v in self._views().items() if k not in leaving}
            capacity = int(self.settings.get("pool_capacity", 0))
            for key, entry in sorted(self.state["pool"].items()):
                if node not in entry["nodes"]:
                    continue
                staying = [n for n in entry["nodes"] if n not in leaving]
                row: dict[str, Any] = {"kind": "pool", "key": key}
                try:
                    data, source = pool.get_first([*staying, node], key)
                    others = {k: v for k, v in views.items() if k not in staying}
                    target = pool.choose(
                        others, self.state["pool"], key, len(data), 1, capacity, None
                    )
                    for name in target:
                        pool.ensure_actor(views[name], capacity)
                    pool.put_all([pool.actor(n) for n in target], key, data)
                    self.pool_commit(key, len(data), pool.checksum(data), [*staying, *target])
                    row.update(state="copied", source=source, to=target)
                except Refused as exc:
                    entry["nodes"] = staying
                    row.update(state="lost" if not staying else "kept", why=str(exc))
                    self._save()
                moved.append(row)
            for rid, record in list(self.state["reservations"].items()):
                if record["node"] != node:
                    continue
                row = {"kind": record["kind"], "id": rid, "resource": record["resource"]}
                if record["kind"] == "share":
                    try:
                        fraction = float(self.settings.get("max_share_fraction", 0.5))
                        view = reservations.pick_shared_node(
                            views,
                            record["resource"],
                            float(record["amount"]),
                            fraction,
                            self._shared_by_node(record["resource"]),
                        )
                        reservations.remove(record.get("pg"))
                        record["node"] = view.name
                        record["pg"] = reservations.place(record)
                        record["state"] = "active"
                        self._save()
                        moved.append({**row, "state": "moved", "to": view.name})
                        continue
                    except Refused as exc:
                        row["why"] = str(exc)
                self._release_record(rid, "node removed")
                moved.append({**row, "state": "released"})
        # The node's empty pool store would keep it busy: Ray lets a drained node go
        # only once nothing runs there.
        with contextlib.suppress(Exception):
            import ray

            ray.kill(pool.actor(node), no_restart=True)
        return {"node": node, "moved": moved}, b""

    def _overview(
        self, args: dict[str, Any], payload: bytes, caller: users.Caller = users.CLUSTER_CODE
    ) -> tuple[Any, bytes]:
        """Everything a dashboard shows of the controller in one call: the offload
        policy, the live reservations, the pool's objects and the metrics numbers."""
        boosts, _ = self._list({}, b"")
        status, _ = self._offload_status({"recent": args.get("recent", 10)}, b"")
        objects, _ = self._memory_list({}, b"")
        numbers, _ = self._metrics({}, b"")
        return {
            "offload": status,
            "reservations": boosts,
            "memory": objects,
            "metrics": numbers,
        }, b""


def _remove_job_files(job_id: str) -> bool:
    """On a node (a Ray task): remove ``<GRID_OPS_ROOT>/jobs/<job id>``."""
    import shutil

    root = os.environ.get("GRID_OPS_ROOT")
    if not root or jobboard.JOB_ID.fullmatch(job_id) is None:
        return False
    shutil.rmtree(layout.job_file(root, job_id), ignore_errors=True)
    return True


def _command(kind: str) -> str:
    return "boost" if kind == "boost" else "resource-sharing"


# Open to any caller on the socket.
OPEN_OPS = frozenset({"ping"})
# What only an admin may do (and what the refusal calls it).
ADMIN_OPS = {
    "configure": "change the controller's settings ('grid-ops apply')",
    "evacuate": "move work off a node",
    "offload-set": "change the offload policy",
}
OPS: dict[str, Any] = {
    "ping": lambda self, args, payload, caller: (self._ping(), b""),
    "reserve": Controller._reserve,
    "release": Controller._release,
    "reservations": Controller._list,
    "offload-set": Controller._offload_set,
    "offload-status": Controller._offload_status,
    "memory-store": Controller._memory_store,
    "memory-retrieve": Controller._memory_retrieve,
    "memory-list": Controller._memory_list,
    "memory-delete": Controller._memory_delete,
    "metrics": Controller._metrics,
    "overview": Controller._overview,
    "configure": Controller._configure,
    "evacuate": Controller._evacuate,
    "job-submit": Controller._job_submit,
    "job-list": Controller._job_list,
    "job-get": Controller._job_get,
    "job-cancel": Controller._job_cancel,
    "user-token": Controller._user_token,
    "whoami": Controller._whoami,
    "users": Controller._users,
    "usage": Controller._usage,
}


# ---------------------------------------------------------------------------------------
# ensure: run on the head by cluster start


def _answering(state: Path) -> str:
    """The version of the controller answering on ``state``'s socket ("" when none)."""
    try:
        result, _ = protocol.call(state, "ping", timeout=5)
    except (ConnectionError, OSError, protocol.RemoteError, ValueError):
        return ""
    return str(result.get("version") or "")


def _wait_for_nodes(address: str | None, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` nodes are alive in the GCS (or ``timeout``): the controller's start
    then does not compete for CPU with workers that are still starting."""
    if not address or count < 2:
        return
    from ray._raylet import GcsClient

    client = GcsClient(address=address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the GCS may still be coming up
            nodes = client.get_all_node_info(timeout=5).values()
            if sum(1 for n in nodes if n.state == 0) >= count:
                return
        time.sleep(0.5)


def settings_version(settings: dict[str, Any]) -> str:
    """The controller's version: its code, and a digest of its settings."""
    given = json.dumps({k: v for k, v in settings.items() if k != "version"}, sort_keys=True)
    return f"{code_version()}-{hashlib.sha256(given.encode()).hexdigest()[:8]}"


def ensure(state: Path, settings: dict[str, Any], address: str | None) -> dict[str, Any]:
    """Start the controller unless one answers running this code with these settings;
    one running this code with other settings takes them in place."""
    version = settings_version(settings)
    settings = {**settings, "version": version}
    answering = _answering(state)
    if answering == version:
        return {"changed": False, "version": version}
    if answering and answering.split("-")[0] == version.split("-")[0]:
        with contextlib.suppress(ConnectionError, OSError, protocol.RemoteError, ValueError):
            protocol.call(state, "configure", {"settings": settings}, timeout=30)
            return {"changed": True, "version": version, "configured": True}
    _wait_for_nodes(address, len(settings.get("nodes") or {}))
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(
        address=address or "auto", namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False
    )
    try:
        try:
            old = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
            ray.kill(old, no_restart=True)
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
                except ValueError:
                    break
                time.sleep(0.2)
        except ValueError:
            pass
        here = ray.get_runtime_context().get_node_id()
        actor = (
            ray.remote(Controller)
            .options(
                name=ACTOR_NAME,
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                max_concurrency=32,
                max_restarts=-1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
            )
            .remote(str(state), settings)
        )
        info = ray.get(actor.ready.remote(), timeout=120)
    finally:
        ray.shutdown()
    return {"changed": True, "version": version, "pid": info.get("pid")}


def _wanted(settings: str) -> str:
    """The version a start under way brings the controller to (clients wait for it)."""
    try:
        return settings_version(json.loads(settings))
    except ValueError:
        return ""


def _background(state: Path, args: argparse.Namespace) -> int:
    """Start ``ensure`` detached (own session, output to ensure.log) and return."""
    import subprocess

    command = [sys.executable, "-m", "grid_ops.runtime.controller", "ensure",
               "--settings", args.settings, "--state-dir", str(state)]  # fmt: skip
    if args.address:
        command += ["--address", args.address]
    # The child waits on the lock until "starting" names it, so a client never sees
    # the previous start's state in between.
    opener = protocol.private_open
    with (
        open(state / "ensure.lock", "w", opener=opener) as lock,
        open(state / "ensure.log", "wb", opener=opener) as log,
    ):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an earlier start is still at work: this one replaces it
            earlier = int(protocol.ensure_status(state).get("pid") or 0)
            if earlier > 1 and earlier != os.getpid():
                with contextlib.suppress(OSError):
                    os.killpg(earlier, signal.SIGKILL)
            fcntl.flock(lock, fcntl.LOCK_EX)
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=lambda: os.nice(10))  # fmt: skip
        protocol.write_ensure_status(state, {"pid": child.pid, "started_at": time.time(),
                                             "state": "starting",
                                             "version": _wanted(args.settings)})  # fmt: skip
    print(json.dumps({"changed": False, "background": child.pid}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("ensure", help="start the controller unless it runs this code")
    start.add_argument("--settings", required=True, help="JSON: nodes, head, pool_capacity …")
    start.add_argument("--state-dir", default=protocol.DEFAULT_STATE_DIR)
    start.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    start.add_argument(
        "--background", action="store_true", help="return at once; the start goes on detached"
    )
    args = parser.parse_args(argv)
    state = protocol.state_dir(args.state_dir)
    try:
        protocol.private_state(state)
    except OSError as exc:  # a link, another user's dir, or no room: said as JSON
        error = (
            f"the controller's state dir {state} cannot be made private to this user: "
            f"{exc.strerror or exc}; remove it (grid-ops makes it again) and retry"
        )
        print(json.dumps({"changed": False, "error": error}))
        return 1
    if args.background:
        return _background(state, args)
    with open(state / "ensure.lock", "w", opener=protocol.private_open) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one start at a time; a second one finds it running
        stamp = {"pid": os.getpid(), "started_at": time.time()}
        starting = {**stamp, "state": "starting", "version": _wanted(args.settings)}
        protocol.write_ensure_status(state, starting)
        try:
            out = ensure(state, json.loads(args.settings), args.address)
        except Exception as exc:  # Ray down or the actor failed to start: say so, as JSON
            error = f"{type(exc).__name__}: {exc}".strip().splitlines()[-1]
            protocol.write_ensure_status(state, {**stamp, "state": "failed", "error": error})
            print(json.dumps({"changed": False, "error": error}))
            return 1
        protocol.write_ensure_status(state, {**stamp, "state": "done", **out})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
