"""The CPU policy: passive OpenMP waiting before torch loads, threads per work size, native bf16."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipelines import cpu
from pipelines.types import GenerationRequest

ROOT = Path(__file__).resolve().parents[2]

BUNDLED_UNET = 3_304_900  # parameters of the bundled toy-world UNet
SD15_UNET = 859_520_964


def test_passive_waiting_is_asked_for_unless_the_user_chose():
    environ: dict[str, str] = {}
    cpu.apply_environment(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    cpu.apply_environment(chosen)
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE"}


@pytest.mark.parametrize("entry", ["pipelines.cli", "pipelines.engine"])
def test_waiting_policy_is_set_before_torch_loads(entry):
    # Records the variable at the moment torch's import starts, which is when OpenMP reads it.
    probe = textwrap.dedent(
        f"""
        import importlib.abc, os, sys

        class Watch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and "seen" not in globals():
                    globals()["seen"] = os.environ.get("OMP_WAIT_POLICY")
                return None

        sys.meta_path.insert(0, Watch())
        import {entry}
        import torch  # an entry point may load torch only when it runs: the policy must be set by then
        print(seen)
        """
    )
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "PASSIVE"


@pytest.mark.parametrize(
    ("latent_pixels", "parameters", "cores", "expected"),
    [
        (8 * 8 * 2, BUNDLED_UNET, 16, 1),  # the bundled model at 64x64, CFG pair: one thread
        (16 * 16 * 2, BUNDLED_UNET, 16, 1),  # ... at 128x128 still too little work to split
        (32 * 32 * 2, BUNDLED_UNET, 16, 3),
        (64 * 64 * 2, SD15_UNET, 16, 16),  # SD 1.5 at 512x512: every core
        (64 * 64 * 2, SD15_UNET, 2, 2),
        (64 * 64 * 8, SD15_UNET, 1, 1),
    ],
)
def test_threads_follow_the_work_and_the_cores(latent_pixels, parameters, cores, expected):
    assert cpu.choose_threads(latent_pixels, parameters, cores=cores, environ={}) == expected


def test_the_user_overrides_the_thread_count():
    big, small = (64 * 64 * 2, SD15_UNET), (8 * 8 * 2, BUNDLED_UNET)
    assert cpu.choose_threads(*small, cores=16, setting=4, environ={}) == 4
    environ = {cpu.THREADS_VARIABLE: "3"}
    assert cpu.choose_threads(*big, cores=16, setting=4, environ=environ) == 3  # the variable wins
    for ignored in ("", "0", "-2", "many"):
        environ = {cpu.THREADS_VARIABLE: ignored}
        assert cpu.choose_threads(*big, cores=16, environ=environ) == 16
        assert cpu.choose_threads(*big, cores=16, setting=5, environ=environ) == 5


def test_thread_count_is_restored_after_the_block():
    before = torch.get_num_threads()
    with cpu.thread_count(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_runs_use_the_thread_count_of_their_work(sd1_folder, monkeypatch):
    from pipelines.engine import Engine, EngineSettings

    request = GenerationRequest(prompt="x", model=str(sd1_folder), seed=1, steps=2)
    monkeypatch.delenv(cpu.THREADS_VARIABLE, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        engine = Engine(EngineSettings(device="cpu"))
        engine.run(request, on_step=lambda p: seen.append(torch.get_num_threads()))
        assert seen == [1, 1]  # 64x64 on a tiny UNet: one thread
        assert torch.get_num_threads() == 2
        set_engine = Engine(EngineSettings(device="cpu", threads=3))
        seen.clear()
        set_engine.run(request, on_step=lambda p: seen.append(torch.get_num_threads()))
        assert seen == [3, 3]
        monkeypatch.setenv(cpu.THREADS_VARIABLE, "2")
        seen.clear()
        set_engine.run(request, on_step=lambda p: seen.append(torch.get_num_threads()))
        assert seen == [2, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx avx2 avx512f {extra}
bugs\t\t: spectre_v1
"""


@pytest.mark.parametrize(
    ("extra", "native"),
    [
        ("", False),
        ("avx512_vnni avx512_fp16", False),
        ("avx512_bf16", True),
        ("amx_bf16 amx_tile amx_int8", True),
    ],
)
def test_bf16_only_where_the_cpu_runs_it_natively(extra, native):
    from pipelines.engine import pick_dtype

    flags = cpu.cpu_flags(CPUINFO.format(extra=extra))
    assert "avx512f" in flags
    assert cpu.native_bf16(flags) is native
    expected = torch.bfloat16 if native else torch.float32
    assert pick_dtype(torch.device("cpu"), "auto", cpu_flags=flags) == expected
    # An explicit choice and GPUs are not affected by the CPU's flags.
    assert pick_dtype(torch.device("cpu"), "fp32", cpu_flags=flags) == torch.float32
    assert pick_dtype(torch.device("cuda"), "auto", cpu_flags=flags) == torch.float16


def test_no_cpuinfo_means_no_native_bf16():
    assert cpu.cpu_flags("") == frozenset()
    assert not cpu.native_bf16(frozenset())
