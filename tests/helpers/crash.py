"""The kill driver: one `clean_dataset` run in its own process, killed (SIGKILL) at a chosen stage.

argv: repo mode target out store; mode is embed | knn | manifest (die there, leaving a half-written
temp file where a writer would) or hold (keep the run lock for a few seconds). Prints
"RESULT <paths json>" when the run finishes. Used by tests/e2e/test_crash_safety.py and
benchmarks/soak.py.
"""

from __future__ import annotations

import textwrap

DRIVER = textwrap.dedent(
    """
    import functools, json, os, signal, sys, time, uuid
    from pathlib import Path
    repo, mode, target, out, store = sys.argv[1:6]
    import winnow.embeddings.embed
    import winnow.embeddings.encoders
    import winnow.pipeline.files
    import winnow.pipeline.stages
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import make_settings

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def patch(name, wrapper):
        # The flow modules import helpers by name; patch every module that holds one.
        for mod in (winnow.pipeline.files, winnow.pipeline.stages):
            if hasattr(mod, name):
                setattr(mod, name, wrapper(getattr(mod, name)))

    def half_written(path):
        # What a writer leaves when killed mid-file: a partial temp file beside the target.
        path = Path(path)
        (path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp").write_bytes(b"PAR1 half a file")

    if mode == "embed":
        # Small chunks so some are committed to the store before the kill.
        winnow.pipeline.stages.embed_samples = functools.partial(winnow.embeddings.embed.embed_samples, chunk_size=16)
        real = winnow.embeddings.encoders.Encoder.encode_batch
        calls = []
        def encode_then_die(self, batch):
            calls.append(1)
            if len(calls) == 4:
                die()
            return real(self, batch)
        winnow.embeddings.encoders.Encoder.encode_batch = encode_then_die
    elif mode == "knn":
        def wrap(real):
            def save(graph, path):
                half_written(path)
                die()
            return save
        patch("save_knn_graph", wrap)
    elif mode == "manifest":
        def wrap(real):
            def write(table, path, **kw):
                if Path(path).name == "manifest.parquet":
                    half_written(path)
                    die()
                return real(table, path, **kw)
            return write
        patch("write_parquet", wrap)
    elif mode == "hold":
        # Hold the run lock for a while: signal the test, then embed slowly.
        real = winnow.embeddings.encoders.Encoder.encode_batch
        def slow(self, batch):
            Path(out, "holding").write_text(str(os.getpid()))
            time.sleep(2)  # three batches of 64: the lock is held for 6 s or more
            return real(self, batch)
        winnow.embeddings.encoders.Encoder.encode_batch = slow
    paths = clean_dataset(target, make_settings(out=out, store=store, encoder="pixels:16", k=5))
    print("RESULT " + json.dumps(paths))
    """
)
