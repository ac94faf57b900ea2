"""imgsearch-export: a checkpoint's export lands beside it; a bad checkpoint is a one-line error."""

from __future__ import annotations

from imgsearch.cli.export import main
from imgsearch.models.checkpoint import checkpoint_sha256
from imgsearch.models.classifier import ImageClassifier
from imgsearch.models.export import OnnxEmbedder, cached_export_path
from train_helpers import save_checkpoint


def test_export_cli_writes_beside_the_checkpoint(tmp_path, capsys):
    model = ImageClassifier(backbone="svm", num_classes=2, class_names=["a", "b"], input_size=8).eval()
    ckpt = save_checkpoint(model, tmp_path / "best.ckpt")
    assert main([str(ckpt)]) == 0
    want = cached_export_path(ckpt, checkpoint_sha256(ckpt))
    assert want.is_file() and str(want) in capsys.readouterr().out
    assert OnnxEmbedder(want).meta["class_names"] == ["a", "b"]


def test_export_cli_pretrained_backbone(tmp_path, capsys):
    out = tmp_path / "lite0.onnx"
    assert main(["--backbone", "efficientnet_lite0", "--input-size", "64", "--output", str(out)]) == 0
    assert OnnxEmbedder(out).data_config["input_size"] == [3, 64, 64]


def test_export_cli_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"junk")
    assert main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgsearch-export:") and "x.ckpt" in err and err.count("\n") == 1


def test_export_cli_takes_a_run_directory(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    model = ImageClassifier(backbone="svm", num_classes=2, class_names=["a", "b"], input_size=8).eval()
    ckpt = save_checkpoint(model, run / "checkpoints" / "epoch_003.ckpt")
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": str(ckpt)}))
    assert main([str(run)]) == 0  # the run's best checkpoint, as index and eval resolve it
    assert cached_export_path(ckpt, checkpoint_sha256(ckpt)).is_file()


def test_export_cli_backbone_fills_the_cache_index_reads(tmp_path, monkeypatch, capsys):
    from imgsearch.models.export import onnx_embedder_for
    from imgsearch.models.pretrained import PretrainedEmbedder

    monkeypatch.setenv("IMGSEARCH_ONNX_CACHE", str(tmp_path / "cache"))
    assert main(["--backbone", "efficientnet_lite0", "--input-size", "64"]) == 0
    (written,) = (tmp_path / "cache").glob("*.onnx")
    assert str(written) in capsys.readouterr().out
    assert OnnxEmbedder(written).outputs == ("features",)
    mtime = written.stat().st_mtime_ns
    # imgsearch-index model=efficientnet_lite0 model.input_size=64 finds it: same file, not exported again
    again = onnx_embedder_for(PretrainedEmbedder("efficientnet_lite0", input_size=64))
    assert again.path == written and written.stat().st_mtime_ns == mtime
