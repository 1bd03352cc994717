"""The gateway streams: a 1 GiB object goes up and comes back in flat memory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.cluster import Cluster, RssSampler

MiB = 1 << 20
GiB = 1 << 30


def test_gateway_rss_stays_flat_for_a_1_gib_object(
    cluster: Cluster, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # A file of pseudo-random 1 MiB blocks, hashed as it is written.
    path = tmp_path / "one-gib"
    digest = hashlib.sha256()
    seed = hashlib.sha256(b"seed").digest()
    with open(path, "wb") as f:
        for i in range(GiB // MiB):
            block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (MiB // 32)
            digest.update(block)
            f.write(block)
    with RssSampler(cluster.pid("gateway")) as rss:
        baseline = rss.samples[0]
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key="huge", Body=f)
        back = hashlib.sha256()
        body = s3.get_object(Bucket=bucket, Key="huge")["Body"]
        while piece := body.read(MiB):
            back.update(piece)
    assert back.hexdigest() == digest.hexdigest()
    growth = rss.peak - baseline
    print(
        f"gateway RSS: baseline {baseline / MiB:.1f} MiB, peak {rss.peak / MiB:.1f} MiB, "
        f"growth {growth / MiB:.1f} MiB"
    )
    assert growth < 100 * MiB
