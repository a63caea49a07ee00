"""The service never imports torch (or export/): import it, start it, serve a request, in a clean process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_serving_loads_no_torch(tiny_store, repo_root):
    code = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from service.rest.app import create_app
        from service.settings import Settings
        app = create_app(Settings(store={str(tiny_store)!r}, models=["tiny"]))
        with TestClient(app) as c:
            body = {{"inputs": [{{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}}]}}
            assert c.post("/v2/models/tiny/infer", json=body).status_code == 200
        import service.__main__
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "export"))
        assert not bad, bad
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
