"""`up` never leaves a silent terminal while Go compiles: step lines plus a heartbeat."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.devcluster import build


def test_heartbeat_while_the_build_is_silent(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bins = tmp_path / "bin"
    bins.mkdir()
    for b in build.BINARIES:
        (bins / b).write_text("")
    script = tmp_path / "build.sh"
    script.write_text(f"""#!/usr/bin/env bash
if [ "${{1:-}}" = --bin-dir ]; then echo {bins}; exit 0; fi
echo "build: [0s] kubernetes v1: compiling kube-apiserver"
echo "go: downloading k8s.io/api v0.34.4"
sleep 1.5
echo "build: [2s] all binaries present"
""")
    monkeypatch.setattr(build, "SCRIPT", script)
    monkeypatch.setattr(build, "HEARTBEAT", 0.4)
    said: list[str] = []
    assert build.ensure(tmp_path / "build.log", said.append) == bins
    assert said[0].strip().startswith("build: [0s] kubernetes v1: compiling kube-apiserver")
    beats = [s for s in said if "still" in s]
    assert beats and "compiling kube-apiserver" in beats[0] and "elapsed" in beats[0]
    assert "1 modules downloaded" in beats[0]
    assert "go: downloading" in (tmp_path / "build.log").read_text()


def test_a_failed_build_names_its_log_and_last_lines(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "build.sh"
    script.write_text("#!/usr/bin/env bash\necho 'go: module k8s.io/x: not found'\nexit 1\n")
    monkeypatch.setattr(build, "SCRIPT", script)
    with pytest.raises(build.BuildError, match=r"(?s)build\.log.*not found"):
        build.ensure(tmp_path / "build.log", lambda s: None)
