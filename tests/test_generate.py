"""`twin generate`: plan checks, patch layout, seeds, the resumable store, and runs on Dask.

The runs (marked slow) use a 2 x 2 plan of 200 m patches over the bundled Helsinki
extract on LocalClusters of 2 workers: one started by ``twin generate`` itself, one
shared by the fault tests (joined with ``--scheduler``), whose workers keep Sionna loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner

from cli.twin import main
from twin.corpus.store import CorpusWriter, open_corpus, sample_array_specs
from twin.errors import InputError
from twin.generate.plan import chunk_size, layout_shards, load_plan, plan_from_dict, shard_seeds
from twin.generate.run import generate
from twin.generate.shards import FAULT_ENV, GROUP_STRIDE, PartialStore

REPO = Path(__file__).resolve().parents[1]
UE = 30


def tiny_plan(out: Path, **changes) -> dict:
    plan = {
        "name": "tiny", "output": str(out), "seed": 7, "ue_per_patch": UE,
        "patches": {"size_m": 200.0, "rows": 2, "cols": 2},
        "deploy": {"strategy": "random", "count": 2, "sectors": 1, "min_spacing_m": 40.0, "height_m": 30.0},
        "trace": {"samples_per_tx": 20000, "max_depth": 1},
        "sample": {"max_events": 8, "max_cells": 2, "chunk_samples": 10},
        "cluster": {"retries": 2},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(plan.get(key), dict):
            plan[key] = {**plan[key], **value}
        else:
            plan[key] = value
    return plan


def write_plan(tmp_path: Path, plan: dict) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


# --------------------------------------------------------------------------- plan checks (fast)

def test_example_plan_parses_and_lays_out_2x2():
    plan = load_plan(REPO / "scenes" / "generate_plan.yaml")
    assert plan.deploy.strategy == "random" and plan.ue_per_patch == 200
    assert plan.sample.chunk_samples == 200  # largest divisor of ue_per_patch up to 4096
    shards = layout_shards(plan, (0.0, 0.0, 1000.0, 1600.0))
    assert [(s.row, s.col) for s in shards] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert shards[3].extent_m == (300.0, 300.0, 600.0, 600.0)


@pytest.mark.parametrize("change, field", [
    ({"region": {"bbox": [24.95, 60.17, 24.94, 60.18]}}, "region.bbox"),
    ({"region": {"osm_file": "no/such/file.osm.pbf"}}, "region.osm_file"),
    ({"deploy": {"strategy": "hexagonal"}}, "deploy.strategy: unknown strategy 'hexagonal'"),
    ({"deploy": {"strategy": "file", "bs_file": "missing_bs.csv"}}, "deploy.bs_file: missing_bs.csv does not exist"),
    ({"ue_per_patch": 0}, "ue_per_patch"),
    ({"sample": {"chunk_samples": 7}}, "sample.chunk_samples: 7 must divide ue_per_patch 30"),
    ({"sample": {"features": ["rsrp_dbm", "colour"]}}, "sample.features: unknown feature(s) colour"),
    ({"patches": {"overlap_m": 250.0}}, "patches.overlap_m"),
])
def test_bad_plan_fails_before_any_shard_naming_the_field(tmp_path, change, field):
    out = tmp_path / "corpus.zarr"
    path = write_plan(tmp_path, tiny_plan(out, **change))
    with pytest.raises(InputError) as err:
        generate(path, workers=1, progress=False)
    assert field in str(err.value) and str(path) in str(err.value)
    assert not out.exists() and not PartialStore(str(out)).exists()  # nothing started


@pytest.mark.parametrize("change, message", [
    ({"deploy": {"count": 0}}, "[deploy]: deploy config: count: 0 must be >= 1"),
    ({"trace": {"samples_per_tx": "many"}}, "[trace]: key 'samples_per_tx'"),
    ({"patchez": {}}, "unknown key(s) patchez"),
    ({"sample": {"n": 10}}, "[sample]: key 'n': set per shard from ue_per_patch"),
    ({"cluster": {"kind": "kubernetes"}}, "[cluster]: key 'kind'"),
])
def test_plan_schema_errors_name_file_and_key(tmp_path, change, message):
    path = write_plan(tmp_path, tiny_plan(tmp_path / "c.zarr", **change))
    with pytest.raises(InputError, match="plan.yaml") as err:
        load_plan(path)
    assert message in str(err.value)


def test_too_many_patches_for_the_region_is_refused(tmp_path):
    plan = plan_from_dict(tiny_plan(tmp_path / "c.zarr", patches={"size_m": 600.0, "rows": 3, "cols": 1}))
    with pytest.raises(InputError, match="patches.rows: 3 patches of 600 m .* need 1800 m, the region spans 1000 m"):
        layout_shards(plan, (0.0, 0.0, 1000.0, 1000.0))


def test_layout_overlap_cover_and_select(tmp_path):
    plan = plan_from_dict(tiny_plan(tmp_path / "c.zarr", patches={"size_m": 400.0, "overlap_m": 100.0,
                                                                "rows": None, "cols": None}))
    shards = layout_shards(plan, (0.0, 0.0, 1000.0, 700.0))
    # step 300 m: columns at 0, 300, 600 (the last cut to 1000), rows at 0, 300
    assert [s.extent_m for s in shards[:3]] == [(0, 0, 400, 400), (300, 0, 700, 400), (600, 0, 1000, 400)]
    assert len(shards) == 6 and shards[-1].extent_m == (600, 300, 1000, 700)
    sel = plan_from_dict(tiny_plan(tmp_path / "c.zarr", patches={"size_m": 400.0, "rows": None, "cols": None,
                                                               "select": [[1, 1], [0, 0]]}))
    picked = layout_shards(sel, (0.0, 0.0, 1000.0, 700.0))
    assert [(s.index, s.row, s.col) for s in picked] == [(0, 1, 1), (1, 0, 0)]
    bad = plan_from_dict(tiny_plan(tmp_path / "c.zarr", patches={"size_m": 400.0, "rows": None, "cols": None, "select": [[5, 0]]}))
    with pytest.raises(InputError, match=r"patches.select: \[5, 0\] is outside"):
        layout_shards(bad, (0.0, 0.0, 1000.0, 700.0))


def test_shard_seeds_depend_on_plan_seed_and_index_only():
    assert shard_seeds(7, 3) == shard_seeds(7, 3)
    seeds = {shard_seeds(7, k) for k in range(50)} | {shard_seeds(8, k) for k in range(50)}
    assert len(seeds) == 100
    assert chunk_size(5000) == 2500 and chunk_size(30) == 30 and chunk_size(8192) == 4096 and chunk_size(97) == 97


def test_corpus_reopen_writes_scenes_by_index_and_disjoint_regions(tmp_path):
    from twin.geo import Grid

    url = tmp_path / "c.zarr"
    CorpusWriter(url, ["rsrp_dbm"], ["dBm"], 4, split_schemes=("random",), chunk_samples=5, n_samples=20,
                 in_place=True)
    grid = Grid(0.0, 0.0, 10.0, 3, 2)

    def samples(n: int, value: float) -> dict:
        out = {k: np.full((n, *shape), fill if k != "position_xy_m" else value, dtype)
               for k, (shape, dtype, _, fill) in sample_array_specs(4, 1).items()}
        out["split_random"] = np.zeros(n, np.uint8)
        return out

    for k in (1, 0, 1):  # scene 1 is written twice, as by a retried shard
        w = CorpusWriter.reopen(url)
        w.add_scene(f"s{k}", grid, index=k, radio_maps=np.full((1, 2, 3), k + 0.5), radio_channels=["a"])
        w.write_at(10 * k, samples(10, float(k)))
    corpus = CorpusWriter.reopen(url).close()
    assert len(corpus) == 20 and corpus.n_scenes == 2
    assert corpus.scene(1).radio_maps[0, 0, 0] == 1.5 and corpus.scene(0).name == "s0"
    np.testing.assert_array_equal(corpus.batch(slice(None))["position_xy_m"][:, 0], np.repeat([0.0, 1.0], 10))
    assert open_corpus(url).attrs["complete"] is True


@pytest.mark.parametrize(("kind", "directives"), [
    ("slurm", ["#SBATCH --gres=gpu:1", "#SBATCH -p gpu", "--resources GPU=1", "--nthreads 1"]),
    ("pbs", ["ngpus=1", "#PBS -q gpu", "--resources GPU=1"]),
])
def test_batch_cluster_job_script_asks_for_one_gpu_per_worker(tmp_path, kind, directives):
    from twin.generate.cluster import batch_cluster

    plan = plan_from_dict(tiny_plan(tmp_path / "c.zarr", cluster={"gpus_per_worker": 1, "queue": "gpu",
                                                                  "memory": "16GB", "walltime": "01:00:00"}))
    cluster = batch_cluster(plan.cluster, kind)  # builds the job script; submits nothing until scaled
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for directive in directives:
        assert directive in script, script


def test_cli_bad_plan_is_one_clean_message(tmp_path):
    path = write_plan(tmp_path, tiny_plan(tmp_path / "c.zarr", deploy={"strategy": "hexagonal"}))
    result = CliRunner().invoke(main, ["generate", str(path)])
    assert result.exit_code == 2
    assert "deploy.strategy: unknown strategy 'hexagonal'" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- runs on Dask (slow)

def read_all(url: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(url), mode="r")
    out = {}

    def walk(group, prefix=""):
        for name, member in group.members():
            if isinstance(member, zarr.Array):
                out[prefix + name] = member[...]
            else:
                walk(member, f"{prefix}{name}/")

    walk(root)
    return out


def assert_same_corpus(a: Path, b: Path) -> None:
    x, y = read_all(a), read_all(b)
    assert sorted(x) == sorted(y)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)
    ax, ay = dict(open_corpus(a).attrs), dict(open_corpus(b).attrs)
    assert ax["stats"] == ay["stats"] and ax["counts"] == ay["counts"] and ax["generate"] == ay["generate"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run through the CLI on the LocalCluster it starts (2 workers)."""
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "corpus.zarr"
    path = write_plan(tmp, tiny_plan(out))
    result = CliRunner().invoke(main, ["generate", str(path), "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "shards: 4 computed, 0 already done, 0 failed, of 4" in result.output
    assert "Dask dashboard" in result.output
    return out


def set_fault(client, spec: str | None) -> None:
    """Arm (or disarm) the fault drill of :mod:`twin.generate.shards` in every worker's environment.

    The nannies get it too, so that a worker they restart after a killed one inherits it.
    """
    for nanny in (False, True):
        if spec is None:
            client.run(lambda: os.environ.pop(FAULT_ENV, None), nanny=nanny)
        else:
            client.run(lambda: os.environ.update({FAULT_ENV: spec}), nanny=nanny)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        yield lc.scheduler_address, client


@pytest.mark.slow
def test_reference_run_has_expected_counts_per_split(reference):
    corpus = open_corpus(reference)
    assert len(corpus) == 4 * UE and corpus.n_scenes == 4
    counts = corpus.attrs["counts"]["splits"]
    for scheme in ("spatial", "random"):
        assert sum(counts[scheme].values()) == 4 * UE
        for part in ("train", "val", "test"):
            assert counts[scheme][part] == len(corpus.split_indices(scheme, part))
    assert counts["random"]["train"] > counts["random"]["test"] > 0
    batch = corpus.batch(slice(None))
    # each shard owns its region: scene k's samples are rows [k * UE, (k + 1) * UE), inside its patch
    np.testing.assert_array_equal(batch["scene_index"], np.repeat(np.arange(4), UE))
    for k, shard in enumerate(corpus.attrs["generate"]["shards"]):
        x0, y0, x1, y1 = shard["extent_m"]
        xy = batch["position_xy_m"][k * UE:(k + 1) * UE]
        assert ((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)).all()
        assert (batch["group_id"][k * UE:(k + 1) * UE] // GROUP_STRIDE == k).all()
        streets = corpus.root[f"scenes/{k}"].attrs["street_split"]
        local = batch["group_id"][k * UE:(k + 1) * UE] % GROUP_STRIDE
        # a sample has its street's part, except the known-street test samples drawn on training streets
        street_part, got = np.asarray(streets)[local], batch["split_spatial"][k * UE:(k + 1) * UE]
        known = (got == 2) & (street_part == 0)
        np.testing.assert_array_equal(got[~known], street_part[~known])
        chunk = 10  # the plan's sample.chunk_samples: the known part is drawn per chunk
        assert known.sum() == sum(round(0.1 * (street_part[c:c + chunk] == 0).sum()) for c in range(0, UE, chunk))
        assert shard["region"] == [k * UE, (k + 1) * UE] and shard["n_cells"] == 2
        assert corpus.scene(k).cell_maps.shape[:2] == (2, 4)
    assert batch["mask"].any(1).all() and np.isfinite(corpus.stats["feature_mean"]).all()
    assert not PartialStore(str(reference)).exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind, shard", [("exit", 1), ("raise", 2)])
def test_killed_worker_or_raising_shard_gives_the_same_corpus(tmp_path, reference, cluster, kind, shard):
    address, client = cluster
    out = tmp_path / "corpus.zarr"
    set_fault(client, f"{shard}:{kind}:1:{tmp_path / 'attempts'}")
    try:
        summary = generate(write_plan(tmp_path, tiny_plan(out)), scheduler=address, progress=False)
    finally:
        set_fault(client, None)
    assert summary.complete and not summary.failures and summary.shards_run == 4
    assert len(list((tmp_path / "attempts").glob("attempt-*"))) == 2  # failed once, then redone
    assert_same_corpus(reference, out)


@pytest.mark.slow
def test_interrupted_run_then_resume_computes_only_the_missing_shard(tmp_path, reference, cluster):
    address, client = cluster
    out = tmp_path / "corpus.zarr"
    path = write_plan(tmp_path, tiny_plan(out))
    set_fault(client, f"3:raise:99:{tmp_path / 'attempts'}")
    try:
        first = generate(path, scheduler=address, progress=False)
    finally:
        set_fault(client, None)
    assert not first.complete and [k for k, _ in first.failures] == [3] and "injected fault" in first.failures[0][1]
    assert len(list((tmp_path / "attempts").glob("attempt-*"))) == 3  # 1 + 2 retries
    partial = PartialStore(str(out))
    assert not out.exists() and sorted(partial.done()) == [0, 1, 2]
    with pytest.raises(InputError, match="pass --resume to continue it or --overwrite"):
        generate(path, scheduler=address, progress=False)
    second = generate(path, scheduler=address, resume=True, progress=False)
    assert second.complete and second.shards_run == 1 and second.shards_skipped == 3
    assert [r["shard"] for r in second.records] == [3]
    assert_same_corpus(reference, out)


@pytest.mark.slow
def test_resume_refuses_a_changed_plan(tmp_path, cluster):
    address, client = cluster
    out = tmp_path / "corpus.zarr"
    set_fault(client, f"0:raise:99:{tmp_path / 'attempts'}")
    try:
        generate(plan_from_dict(tiny_plan(out, patches={"size_m": 200.0, "rows": 1, "cols": 1},
                                          cluster={"retries": 0})), scheduler=address, progress=False)
    finally:
        set_fault(client, None)
    changed = plan_from_dict(tiny_plan(out, seed=8, patches={"size_m": 200.0, "rows": 1, "cols": 1}))
    with pytest.raises(InputError, match=r"plan changed since the interrupted run .*seed"):
        generate(changed, scheduler=address, resume=True, progress=False)


def test_file_strategy_keeps_the_bs_file_sites_inside_each_patch(tmp_path):
    from twin.generate.run import _patch_osm, _prepare
    from twin.generate.shards import _sites
    from twin.scene.build import _build

    probe = plan_from_dict(tiny_plan(tmp_path / "c.zarr"))
    _, _, shards, _ = _prepare(probe)
    (x0, y0, x1, y1), far = shards[0].extent_m, shards[3].extent_m
    bs = tmp_path / "bs.csv"
    bs.write_text("bs_id,cell_id,x_m,y_m,height_m\n"
                  f"a,11,{(x0 + x1) / 2},{(y0 + y1) / 2},30\n"
                  f"b,12,{(far[0] + far[2]) / 2},{(far[1] + far[3]) / 2},30\n")
    plan = plan_from_dict(tiny_plan(tmp_path / "c.zarr", deploy={"strategy": "file", "bs_file": str(bs)}))
    osm, frame, shards, table = _prepare(plan)
    assert list(table["cell_id"]) == [11, 12]
    scenes = [_build(_patch_osm(osm, frame, shards[k].extent_m, 50.0), frame, shards[k].extent_m,
                     tmp_path / f"s{k}", f"s{k}", plan.scene, overwrite=True) for k in (0, 3, 1)]
    assert list(_sites(plan, scenes[0], shards[0], table, 0)["cell_id"]) == [11]
    assert list(_sites(plan, scenes[1], shards[3], table, 0)["cell_id"]) == [12]
    with pytest.raises(InputError, match="no site lies in patch r00_c01"):
        _sites(plan, scenes[2], shards[1], table, 0)


# --------------------------------------------------------------------------- randomization

RANDOMIZE = {"building_materials": ["concrete", "brick", "glass"], "ground_materials": ["medium_dry_ground", "wet_ground"],
             "height_fraction": 0.3, "site_height_m": [20.0, 45.0], "tilt_deg": [2.0, 12.0], "power_dbm": [38.0, 46.0]}


@pytest.mark.parametrize("change, field", [
    ({"building_materials": ["concrete", "cheese"]}, "randomize.building_materials: 'cheese' not ITU"),
    ({"height_fraction": 1.2}, "randomize.height_fraction: 1.2 must be in [0, 1)"),
    ({"tilt_deg": [10.0, 2.0]}, "randomize.tilt_deg: [10.0, 2.0] must be an increasing range"),
])
def test_bad_randomize_section_fails_naming_the_field(tmp_path, change, field):
    path = write_plan(tmp_path, tiny_plan(tmp_path / "c.zarr", randomize=change))
    with pytest.raises(InputError) as err:
        generate(path, workers=1, progress=False)
    assert field in str(err.value) and str(path) in str(err.value)


def test_randomize_draws_per_patch_from_its_seed_into_the_configs():
    from twin.generate.randomize import draw_patch, randomize_seed

    plan = plan_from_dict(tiny_plan(Path("c.zarr"), randomize=RANDOMIZE))
    draws = [draw_patch(plan.randomize, randomize_seed(plan.seed, k), plan.scene, plan.deploy.config)
             for k in range(8)]
    again = draw_patch(plan.randomize, randomize_seed(plan.seed, 3), plan.scene, plan.deploy.config)
    assert again[2] == draws[3][2]  # the shard's seed alone decides
    for scene_cfg, deploy_cfg, rec in draws:
        assert rec["building_material"] in RANDOMIZE["building_materials"]
        assert scene_cfg.materials.building_default == rec["building_material"]
        assert scene_cfg.materials.ground == rec["ground_material"]
        assert scene_cfg.heights.jitter_fraction == 0.3 and scene_cfg.heights.jitter_seed == rec["height_seed"]
        assert 20.0 <= deploy_cfg.height_m == rec["site_height_m"] <= 45.0
        assert 2.0 <= deploy_cfg.tilt_deg == rec["tilt_deg"] <= 12.0
        assert 38.0 <= deploy_cfg.power_dbm == rec["power_dbm"] <= 46.0
        assert deploy_cfg.count == plan.deploy.config.count  # the rest is the plan's
    assert len({r["building_material"] for _, _, r in draws}) > 1
    assert len({r["site_height_m"] for _, _, r in draws}) == 8
    # without the section nothing is drawn and the configs are the plan's
    plain = plan_from_dict(tiny_plan(Path("c.zarr")))
    assert draw_patch(plain.randomize, 5, plain.scene, plain.deploy.config) == (plain.scene, plain.deploy.config, {})
    assert any(p.startswith("randomize.site_height_m: the 'file' strategy") for p in plan.randomize.problems("file"))


def test_height_jitter_scales_each_building_within_the_fraction():
    import pandas as pd

    from twin.scene.heights import HeightConfig, estimate_heights

    b = pd.DataFrame({"height": ["10", "20", "30", "40"] * 25, "building": ["yes"] * 100})
    h0, _, _ = estimate_heights(b, HeightConfig())
    h1, _, _ = estimate_heights(b, HeightConfig(jitter_fraction=0.25, jitter_seed=4))
    ratio = h1 / h0
    assert (ratio >= 0.75).all() and (ratio <= 1.25).all() and ratio.std() > 0.1
    np.testing.assert_array_equal(h1, estimate_heights(b, HeightConfig(jitter_fraction=0.25, jitter_seed=4))[0])
    with pytest.raises(InputError, match="jitter_fraction"):
        HeightConfig(jitter_fraction=1.0)


@pytest.mark.slow
def test_randomized_run_records_what_each_patch_drew(tmp_path):
    out = tmp_path / "corpus.zarr"
    path = write_plan(tmp_path, tiny_plan(out, patches={"rows": 1, "cols": 2}, randomize=RANDOMIZE))
    generate(path, workers=1, progress=False)
    corpus = open_corpus(out)
    shards = corpus.attrs["generate"]["shards"]
    root = zarr.open_group(str(out), mode="r")
    for rec in shards:
        drawn = rec["randomized"]
        assert drawn == dict(root[f"scenes/{rec['shard']}"].attrs)["randomized"]
        sites = dict(root[f"scenes/{rec['shard']}"].attrs)["sites"]
        heights = [s["height_m"] for s in sites]  # an antenna inside a building is lifted to its roof
        assert min(heights) >= drawn["site_height_m"] - 1e-6 and drawn["site_height_m"] in heights
        assert {s["power_dbm"] for s in sites} == {drawn["power_dbm"]}
    assert shards[0]["randomized"] != shards[1]["randomized"]


# --------------------------------------------------------------------------- real SLURM (scripts/slurm-local.sh)

def slurm_available() -> str | None:
    """None when a SLURM cluster answers with an idle node here, else why not."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM client commands (sbatch, sinfo) on this machine"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    if not any(s.strip() in ("idle", "mix") for s in states.splitlines()):
        return f"no idle SLURM node (sinfo: {states.strip() or 'no answer'})"
    return None


def needs_slurm() -> None:
    why = slurm_available()
    if why is None:
        return
    if os.environ.get("TWIN_REQUIRE_SLURM") == "1":  # CI starts a cluster: a missing one is a failure there
        pytest.fail(f"TWIN_REQUIRE_SLURM=1 but {why}")
    pytest.skip(f"{why}: `sudo bash scripts/slurm-local.sh start` starts a one-node cluster")


def slurm_plan(tmp_path: Path, out: Path) -> Path:
    # two one-core jobs of 3 GB each fit the 2-core CI node; job logs stay out of the checkout
    return write_plan(tmp_path, tiny_plan(out, cluster={"kind": "slurm", "retries": 2, "memory": "3GB",
                                                        "walltime": "00:20:00", "log_directory": str(tmp_path / "logs")}))


def slurm_jobs(name_part: str = "dask-worker") -> list[str]:
    import subprocess

    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if name_part in line and "RUNNING" in line]


@pytest.mark.slow
@pytest.mark.slurm
def test_generate_on_slurm_jobs_is_bit_identical_to_the_local_run(tmp_path, reference):
    needs_slurm()
    out = tmp_path / "corpus.zarr"
    result = CliRunner().invoke(main, ["generate", str(slurm_plan(tmp_path, out)), "--cluster", "slurm",
                                       "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "shards: 4 computed, 0 already done, 0 failed, of 4" in result.output
    logs = sorted((tmp_path / "logs").glob("*.out")) + sorted((tmp_path / "logs").glob("*.err"))
    assert len({p.stem for p in logs}) == 2, logs  # two real batch jobs ran the workers
    assert_same_corpus(reference, out)


@pytest.mark.slow
@pytest.mark.slurm
def test_a_cancelled_slurm_job_mid_run_gives_the_same_corpus(tmp_path, reference):
    import subprocess
    import threading
    import time

    needs_slurm()
    out = tmp_path / "corpus.zarr"
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = generate(slurm_plan(tmp_path, out), workers=2, progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 600
    partial = PartialStore(str(out))
    while time.monotonic() < deadline and thread.is_alive():  # cancel a worker once a shard is done
        if partial.exists() and partial.done() and len(slurm_jobs()) == 2:
            break
        time.sleep(0.5)
    jobs = slurm_jobs()
    assert thread.is_alive() and len(jobs) == 2, f"the run ended before a job could be cancelled: {outcome}"
    subprocess.run(["scancel", jobs[0]], check=True)
    thread.join(timeout=900)
    assert not thread.is_alive(), "the run did not finish after a job was cancelled"
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    if not summary.complete:  # shards lost with the job and out of retries: --resume finishes them
        summary = generate(slurm_plan(tmp_path, out), workers=2, resume=True, progress=False)
    assert summary.complete and not summary.failures
    assert_same_corpus(reference, out)


@pytest.mark.slow
def test_plan_with_beams_gives_shards_with_beam_ids(tmp_path):
    out = tmp_path / "corpus.zarr"
    path = write_plan(tmp_path, tiny_plan(out, patches={"rows": 1, "cols": 1}, trace={"beams": 4}))
    generate(path, workers=1, progress=False)
    corpus = open_corpus(out)
    root = zarr.open_group(str(out), mode="r")
    beam, mask = np.asarray(root["samples/beam_id"][...]), np.asarray(root["samples/mask"][...])
    assert len(beam) == UE and corpus.attrs["generate"]["shards"]
    assert ((beam[mask] >= 0) & (beam[mask] < 4)).mean() > 0.95 and (beam[~mask] == -1).all()
    assert len(np.unique(beam[mask])) >= 2
    assert corpus.attrs["sampling"]["n_beams"] == 4
