"""A real network and a real domain under gunicorn: join, publish, search, route, leave."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from safetensors.numpy import save_file
from torch import nn

import grid_cli as grid
from grid_common.identity import NodeIdentity
from grid_common.signing import NodeAuth
from tests.conftest import (
    GRACEFUL_TIMEOUT_S,
    OWNER_EMAIL,
    OWNER_PASSWORD,
    eventually,
    free_port,
    gunicorn_command,
    server_environment,
)
from tests.grid_cli.conftest import DIGITS_CSV
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode

DS_EMAIL = "ds@example.org"
DS_PASSWORD = "ds-password-123"


def member_domain(
    network: LiveNode, domain: LiveNode, tmp_path: Path
) -> tuple[grid.DomainClient, grid.NetworkClient, str]:
    """A domain with one dataset and a data scientist, approved on the network."""
    owner = grid.login(domain.url, OWNER_EMAIL, OWNER_PASSWORD)
    csv = tmp_path / "digits.csv"
    csv.write_text(DIGITS_CSV)
    owner.upload_dataset(
        "digits-a",
        csv,
        label="target",
        description="Handwritten digit features",
        tags=["digits"],
        progress=False,
    )
    owner.create_user(DS_EMAIL, DS_PASSWORD, role="data_scientist")
    membership = owner.join_network(network.url)
    assert membership.status == "pending"
    assert owner.networks[0].network_id == membership.network_id

    operator = grid.connect(network.url)
    operator.sign_in(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    [request] = operator.associations(status="pending")
    assert request.url == domain.url
    assert request.encryption_key == membership.encryption_key or request.encryption_key
    operator.approve(request.id, reason="known hospital")
    eventually(lambda: owner.networks[0].status == "approved", "the domain to learn it joined")
    return owner, operator, request.domain_id


def test_join_publish_search_route_and_leave(
    live_network: LiveNode,
    live_member: LiveNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, operator, domain_id = member_domain(live_network, live_member, tmp_path)
    node = requests.get(f"{live_member.url}/api/v1/node", timeout=5).json()
    assert node["id"] == domain_id
    membership = owner.networks[0]
    assert (
        membership.signing_key
        == requests.get(f"{live_network.url}/api/v1/node").json()["signing_key"]
    )
    association = operator.associations()[0]
    assert association.signing_key == node["signing_key"]
    assert association.encryption_key == node["encryption_key"]

    net = grid.connect(live_network.url)
    assert isinstance(net, grid.NetworkClient)
    hits = eventually(lambda: net.search("handwritten digits", tags=["digits"]), "the push")
    assert [(h.domain.id, h.dataset.name) for h in hits] == [(domain_id, "digits-a")]
    assert hits[0].score > 0
    assert hits[0].dataset.columns == ["f0", "f1", "f2", "target"]
    assert hits[0].dataset.row_count == 30 and hits[0].dataset.has_mock
    [listed] = eventually(lambda: [d for d in net.domains if d.online], "a health check")
    assert (listed.id, listed.name, listed.url, listed.dataset_count) == (
        domain_id,
        "hospital-a",
        live_member.url,
        1,
    )
    assert listed.last_seen is not None

    direct = net.login_domain(hits[0].domain, DS_EMAIL, DS_PASSWORD)
    assert direct.url == live_member.url
    routed = net.login_domain("hospital-a", DS_EMAIL, DS_PASSWORD, via="network")
    assert routed.url == f"{live_network.url}/api/v1/domains/{domain_id}"
    assert routed.me.email == DS_EMAIL
    assert routed.datasets.names == ["digits-a"]
    assert list(routed.datasets["digits-a"].mock.columns) == ["f0", "f1", "f2", "target"]
    model = nn.Sequential(nn.Linear(3, 3))
    job = routed.submit_training(model, "digits-a", {"loss": "cross_entropy"}, "via the network")
    assert owner.request(job.id).requester == DS_EMAIL
    with pytest.raises(grid.GridError) as refused:
        routed.create_user("x@example.org", "a-long-password")  # the domain says no
    assert refused.value.status == 403
    bad_token = requests.get(
        f"{routed.url}/api/v1/auth/me", headers={"Authorization": "Bearer forged"}, timeout=5
    )
    assert bad_token.status_code == 401
    assert "Access token is invalid" in bad_token.json()["error"]["message"]
    missing = requests.get(f"{live_network.url}/api/v1/domains/{'0' * 32}/healthz", timeout=5)
    assert missing.status_code == 404

    # A client behind a proxy that cannot reach the domain gets routed without asking.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "localhost")
    behind = grid.connect(live_network.url.replace("127.0.0.1", "localhost"))
    assert not behind.reaches_directly(domain_id)
    auto = behind.login_domain(domain_id, DS_EMAIL, DS_PASSWORD)
    assert "/api/v1/domains/" in auto.url
    assert auto.datasets.names == ["digits-a"]
    monkeypatch.delenv("HTTP_PROXY")

    # Changes reach the index by themselves: a new dataset, then a deleted one.
    csv = tmp_path / "strokes.csv"
    csv.write_text(DIGITS_CSV)
    owner.upload_dataset("pen-strokes", csv, description="Pen strokes", progress=False)
    eventually(lambda: net.search("strokes"), "the new dataset in the index")
    owner.delete_dataset("digits-a")
    eventually(lambda: not net.search("handwritten"), "the deleted dataset to leave the index")

    # Replays are refused whichever gunicorn worker answers: nonces live in the database.
    stranger = NodeIdentity.generate()
    recipient = requests.get(f"{live_network.url}/api/v1/node", timeout=5).json()["id"]
    for _ in range(4):
        prepared = requests.Request(
            "GET",
            f"{live_network.url}/api/v1/associations/self",
            auth=NodeAuth(stranger, recipient),
        ).prepare()
        with requests.Session() as session:
            assert session.send(prepared, timeout=5).status_code == 404
            replayed = session.send(prepared, timeout=5)
        assert replayed.status_code == 401
        assert replayed.json()["error"]["code"] == "replayed"

    assert owner.leave_network(membership.network_id) is None
    assert owner.networks == []
    assert net.search("strokes") == []
    assert net.domains == []
    assert operator.associations()[0].status == "left"
    # Other gunicorn workers may route for up to a second from what they remember.
    eventually(
        lambda: requests.get(f"{routed.url}/api/v1/auth/me", timeout=5).status_code == 404,
        "routing to stop",
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_routing_streams_large_bodies_in_constant_memory(
    live_network: LiveNode, live_member: LiveNode, tmp_path: Path
) -> None:
    _, _, domain_id = member_domain(live_network, live_member, tmp_path)
    net = grid.connect(live_network.url)
    routed_owner = net.login_domain(domain_id, OWNER_EMAIL, OWNER_PASSWORD, via="network")
    path = tmp_path / "big.safetensors"
    rows = 48 * 1024 * 1024 // (64 * 4)
    save_file({"x": np.random.default_rng(0).random((rows, 64), dtype=np.float32)}, str(path))
    size = path.stat().st_size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def peak_rss() -> int:
        peaks = []
        for pid in live_network.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(status.split("VmHWM:")[1].split()[0]) * 1024)
        return max(peaks)

    before = peak_rss()
    uploaded = routed_owner.upload_dataset("big", path, progress=False)
    assert uploaded.size_bytes == size
    download = requests.get(
        f"{routed_owner.url}/api/v1/datasets/big/data",
        headers={"Authorization": f"Bearer {routed_owner.access_token}"},
        stream=True,
        timeout=60,
    )
    assert download.status_code == 200
    assert int(download.headers["Content-Length"]) == size
    received = hashlib.sha256()
    for chunk in download.iter_content(1 << 20):
        received.update(chunk)
    assert received.hexdigest() == digest
    # The body crossed the network twice; a buffering router would have grown by its size.
    assert peak_rss() - before < size // 4

    # Health: a domain that stops answering is offline, with when it was last seen.
    [online] = eventually(lambda: [d for d in net.domains if d.online], "a health check")
    live_member.stop()
    [offline] = eventually(lambda: [d for d in net.domains if not d.online], "going offline")
    assert offline.last_seen is not None and offline.last_seen >= online.last_seen
    unreachable = requests.get(f"{routed_owner.url}/healthz", timeout=10)
    assert unreachable.status_code == 502
    assert unreachable.json()["error"]["code"] == "domain_unreachable"


def stops_in_time(process: subprocess.Popen[bytes], what: str) -> int:
    """SIGTERM `process`; its exit status, or a failure if gunicorn had to kill a worker."""
    process.terminate()
    try:
        return process.wait(timeout=GRACEFUL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{what} did not stop within {GRACEFUL_TIMEOUT_S} s of SIGTERM")


def test_nodes_stop_on_sigterm_with_their_background_loops_running(
    live_network: LiveNode, live_member: LiveNode, tmp_path: Path
) -> None:
    member_domain(live_network, live_member, tmp_path)  # the domain's sync loop saw approval
    net = grid.connect(live_network.url)
    eventually(lambda: [d for d in net.domains if d.online], "the network's health check")
    for node, what in ((live_member, "the domain"), (live_network, "the network")):
        workers = node.worker_pids()
        assert stops_in_time(node.process, what) == 0
        log = Path(node.log.name).read_text()
        assert all(f"Worker exiting (pid: {pid})" in log for pid in workers), log[-2000:]


@pytest.mark.live
def test_a_node_told_to_stop_while_its_workers_boot_stops(
    database_url: str, tmp_path: Path
) -> None:
    # A SIGTERM that reaches a worker between its fork and its own signal handlers must not
    # be lost: four workers make that window likely to be hit on a busy machine.
    log_path = tmp_path / "booting.log"
    settings = {"GRID_DATA_DIR": str(tmp_path / "node"), "GRID_DATABASE_URL": database_url}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            gunicorn_command("domain", free_port(), workers=4),
            env=server_environment(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        eventually(
            lambda: log_path.read_text().count("Booting worker") == 4, "four workers to fork", 120
        )
        assert stops_in_time(process, "a domain whose workers were booting") == 0
