"""Live test of the WebHDFS client (hdfs/webhdfs.c): runs the webhdfs_live program built
from tests/webhdfs_live.c against the test HDFS, then checks with plain HTTP that it
removed its scratch folder."""
import os
import re
import subprocess
import uuid

import requests

from conftest import BIN, WEBHDFS

LIVE = os.path.join(os.path.dirname(BIN), "webhdfs_live")


def test_webhdfs_client_against_real_hdfs():
    assert os.access(LIVE, os.X_OK), f"{LIVE} is missing: build the webhdfs_live target"
    scratch = f"/lootlog-test/webhdfs-{uuid.uuid4().hex}"

    proc = subprocess.run([LIVE, WEBHDFS, scratch], capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    assert re.search(r"^\d+ passed, 0 failed$", proc.stdout, re.MULTILINE), output

    # Independently of the client under test: the scratch folder is gone.
    r = requests.get(f"{WEBHDFS}/webhdfs/v1{scratch}",
                     params={"op": "GETFILESTATUS", "user.name": "root"}, timeout=10)
    assert r.status_code == 404, r.text
    assert r.json()["RemoteException"]["exception"] == "FileNotFoundException", r.text
