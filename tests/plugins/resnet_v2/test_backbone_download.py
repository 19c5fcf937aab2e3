"""Weight downloads against a real HTTP server on 127.0.0.1: good file, bad checksum, 404, unreachable."""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from ctframe_resnet_v2 import download
from ctframe_resnet_v2.download import WeightFile, fetch_imagenet_weights, file_md5
from ctframe_resnet_v2.factory import build_resnet_v2
from ctframe_resnet_v2.model import ARCHITECTURES, Architecture, ResNetV2
from ctframe_resnet_v2.options import ResNetV2Options
from ctframe_resnet_v2.weights import WeightsError, save_keras_h5
from ctframe_torchvision import weights as tv_weights
from ctframe_torchvision.factory import build_torchvision_backbone
from ctframe_torchvision.options import TorchvisionOptions

from ctframe import BuildContext, CtframeError


class Server:
    def __init__(self, root: Path, httpd: ThreadingHTTPServer):
        self.root = root
        self.httpd = httpd
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    holder: dict[str, Server] = {}

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            holder["server"].requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    holder["server"] = Server(root, httpd)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield holder["server"]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.h5"


@pytest.fixture
def tiny_arch(monkeypatch) -> str:
    monkeypatch.setitem(ARCHITECTURES, "tinyv2", Architecture((2, 2, 2, 2), 0, filters=(4, 8, 16, 32)))
    return "tinyv2"


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, CtframeError) and "\n" not in message
    return message


def test_imagenet_weights_download_once(server: Server, tiny_arch: str, tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    published = ResNetV2(tiny_arch).eval()
    save_keras_h5(published, server.root / "tiny_notop.h5")
    entry = WeightFile(server.url("tiny_notop.h5"), file_md5(server.root / "tiny_notop.h5"))
    monkeypatch.setitem(download.IMAGENET_WEIGHTS, tiny_arch, entry)
    cache = tmp_path / "cache"
    context = BuildContext(seed=0, device="cpu", recipe_dir=tmp_path)
    options = ResNetV2Options(weights="imagenet", cache_dir=cache)

    first = build_resnet_v2(tiny_arch, options, context).eval()
    second = build_resnet_v2(tiny_arch, options, context).eval()
    assert server.requests == ["/tiny_notop.h5"], "the second build must use the cache"
    assert sorted(p.name for p in cache.iterdir()) == ["tiny_notop.h5"]  # no temporary files left
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(first(images), published(images))
        torch.testing.assert_close(second(images), published(images))

    (cache / "tiny_notop.h5").write_bytes(b"truncated")  # a corrupt cached copy is fetched again
    assert fetch_imagenet_weights(tiny_arch, cache) == cache / "tiny_notop.h5"
    assert file_md5(cache / "tiny_notop.h5") == entry.md5 and len(server.requests) == 2


def test_cache_folder_defaults_to_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTFRAME_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert download.default_cache_dir() == tmp_path / "weights"
    monkeypatch.delenv("CTFRAME_WEIGHTS_DIR")
    assert download.default_cache_dir() == Path.home() / ".cache" / "ctframe" / "weights"


def test_bad_checksum_missing_file_and_no_server_are_clear(
    server: Server, tiny_arch: str, closed_port_url: str, tmp_path: Path, monkeypatch
) -> None:
    (server.root / "weights.h5").write_bytes(b"some bytes")
    cache = tmp_path / "cache"

    monkeypatch.setitem(download.IMAGENET_WEIGHTS, tiny_arch, WeightFile(server.url("weights.h5"), "0" * 32))
    with pytest.raises(WeightsError) as error:
        fetch_imagenet_weights(tiny_arch, cache)
    message = _one_line(error)
    assert f"is corrupt (md5 {hashlib.md5(b'some bytes').hexdigest()}, expected {'0' * 32})" in message
    assert not cache.exists() or not any(cache.iterdir()), "a bad download must leave nothing behind"

    monkeypatch.setitem(download.IMAGENET_WEIGHTS, tiny_arch, WeightFile(server.url("absent.h5"), "0" * 32))
    with pytest.raises(WeightsError) as error:
        fetch_imagenet_weights(tiny_arch, cache)
    message = _one_line(error)
    assert server.url("absent.h5") in message and "HTTP 404" in message
    assert str(cache / "absent.h5") in message

    monkeypatch.setitem(download.IMAGENET_WEIGHTS, tiny_arch, WeightFile(closed_port_url, "0" * 32))
    with pytest.raises(WeightsError) as error:
        fetch_imagenet_weights(tiny_arch, cache, timeout=5)
    message = _one_line(error)
    assert f"cannot download {closed_port_url}" in message and f"put it at {cache / 'weights.h5'}" in message


def test_published_table_matches_keras_sources() -> None:
    table = download.IMAGENET_WEIGHTS
    assert table["resnet101v2"].url == (
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert table["resnet101v2"].md5 == "c0ed64b8031c3730f411d2eb4eea35b5"
    assert set(table) == {"resnet50v2", "resnet101v2", "resnet152v2"}


def test_torchvision_fetch_checks_file_name_hash(server: Server, closed_port_url: str, tmp_path: Path):
    payload = b"torchvision weights stand-in"
    digest = hashlib.sha256(payload).hexdigest()
    (server.root / f"net-{digest[:8]}.pth").write_bytes(payload)
    (server.root / "net-deadbeef.pth").write_bytes(payload)
    cache = tmp_path / "hub"

    good = tv_weights.fetch(server.url(f"net-{digest[:8]}.pth"), cache / f"net-{digest[:8]}.pth")
    assert good.read_bytes() == payload
    with pytest.raises(tv_weights.WeightsError) as error:
        tv_weights.fetch(server.url("net-deadbeef.pth"), cache / "net-deadbeef.pth")
    assert "is corrupt" in _one_line(error) and not (cache / "net-deadbeef.pth").exists()
    with pytest.raises(tv_weights.WeightsError) as error:
        tv_weights.fetch(server.url("net-0000.pth"), cache / "net-0000.pth")
    assert "HTTP 404" in _one_line(error) and str(cache / "net-0000.pth") in str(error.value)
    with pytest.raises(tv_weights.WeightsError) as error:
        tv_weights.fetch(closed_port_url, cache / "weights.h5")
    assert f"cannot download {closed_port_url}" in _one_line(error)


def test_torchvision_imagenet_weights_come_from_the_cache(tmp_path: Path) -> None:
    """A file already in the cache folder under torchvision's name is used without any download."""
    from torchvision import models

    torch.manual_seed(0)
    reference = models.resnet18(weights=None).eval()
    file_name = models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(reference.state_dict(), tmp_path / file_name)
    options = TorchvisionOptions(arch="resnet18", weights="imagenet", cache_dir=tmp_path)
    backbone = build_torchvision_backbone(options, BuildContext(seed=0, device="cpu", recipe_dir=tmp_path))
    torch.testing.assert_close(backbone.model.conv1.weight, reference.conv1.weight)
