"""download: offline fails at once with one line (URL + destination), archives land in our layout."""

import hashlib
import io
import zipfile
from urllib.error import URLError

import pytest

from medtransfer.data import download as dl
from medtransfer.errors import ConfigError, DataError


def test_offline_fails_once_naming_url_and_dest(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(dl, "urlopen", offline)
    dest = tmp_path / "kvasir_seg"
    with pytest.raises(DataError) as e:
        dl.download("kvasir_seg", dest)
    msg = str(e.value)
    assert "\n" not in msg and dl.SOURCES["kvasir_seg"][0].url in msg and str(dest) in msg
    assert calls == [dl.SOURCES["kvasir_seg"][0].url]  # no retry, nothing after the first failure
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # no half download left


def _fake_zip(n=3) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"Kvasir-SEG/images/id{i}.jpg", b"jpeg")
            z.writestr(f"Kvasir-SEG/masks/id{i}.jpg", b"jpeg")
        z.writestr("Kvasir-SEG/kavsir_bboxes.json", b"{}")
    return buf.getvalue()


def _serve(monkeypatch, payloads):
    def fake(url, timeout):
        return io.BytesIO(payloads[url])

    monkeypatch.setattr(dl, "urlopen", fake)


def test_fake_zip_is_unpacked_into_layout(tmp_path, monkeypatch):
    z, lst = _fake_zip(), b"id0\nid1\n"
    sources = (
        dl.Remote(
            "https://x/kvasir.zip",
            hashlib.sha256(z).hexdigest(),
            archive="zip",
            rename=(("images", "images"), ("masks", "masks")),
        ),
        dl.Remote("https://x/train.txt", hashlib.sha256(lst).hexdigest(), dest="splits/train.txt"),
    )
    monkeypatch.setitem(dl.SOURCES, "kvasir_seg", sources)
    monkeypatch.setitem(dl.EXPECTED_PAIRS, "kvasir_seg", 3)
    _serve(monkeypatch, {"https://x/kvasir.zip": z, "https://x/train.txt": lst})
    dest = dl.download("kvasir_seg", tmp_path / "kvasir_seg")
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["id0.jpg", "id1.jpg", "id2.jpg"]
    assert len(list((dest / "masks").iterdir())) == 3
    assert (dest / "splits" / "train.txt").read_bytes() == lst
    assert [p.name for p in tmp_path.iterdir()] == ["kvasir_seg"]  # staging folder gone
    monkeypatch.setattr(dl, "urlopen", lambda *a, **k: pytest.fail("re-downloaded a present dataset"))
    assert dl.download("kvasir_seg", dest) == dest


def test_checksum_and_count_mismatch(tmp_path, monkeypatch):
    z = _fake_zip()
    bad_sha = (dl.Remote("https://x/k.zip", "0" * 64, archive="zip", rename=(("images", "images"),)),)
    monkeypatch.setitem(dl.SOURCES, "kvasir_seg", bad_sha)
    _serve(monkeypatch, {"https://x/k.zip": z})
    with pytest.raises(DataError, match="sha256 .* != expected 0000"):
        dl.download("kvasir_seg", tmp_path / "a")
    no_sha = (
        dl.Remote("https://x/k.zip", None, archive="zip", rename=(("images", "images"), ("masks", "masks"))),
    )
    monkeypatch.setitem(dl.SOURCES, "kvasir_seg", no_sha)
    with pytest.raises(DataError, match="expected 1000 images and 1000 masks, found 3 and 3"):
        dl.download("kvasir_seg", tmp_path / "b")


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="valid choices: cvc_clinicdb, kvasir_seg"):
        dl.download("drive", "/tmp/x")


def test_pinned_facts():
    k = dl.SOURCES["kvasir_seg"]
    assert k[0].url == "https://datasets.simula.no/downloads/kvasir-seg.zip" and len(k[0].sha256) == 64
    assert dl.SOURCES["cvc_clinicdb"][0].sha256 is None  # no published checksum: contents are checked
