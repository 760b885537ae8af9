"""N-D image files: axes and metadata from ImageJ, OME-TIFF, plain TIFF, .npy (and CZI through
bioio when installed), kept from input to output by read_image_nd / write_image_nd."""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import shared_data
from n2v_cascade.errors import InputError, OutputExistsError
from n2v_cascade.imagefile import ImageMeta, describe, read_image_nd, write_image_nd
from n2v_cascade.io import write_image

DATA = shared_data() / "microscopy_nd"
CD = DATA / "aicspylibczi_cd_tczyx_multichannel"


def real(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"real test file {path} is not on this machine")
    return path


def ramp(shape: tuple[int, ...], dtype=np.uint16) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 4000 + 10).reshape(shape).astype(dtype)


def meta(axes: str, **fields) -> ImageMeta:
    values = dict(dtype="uint16", physical={}, unit=None, channel_names=None, source="in",
                  kind="npy")
    values.update(fields)
    return ImageMeta(axes=axes, **values)


def imagej_zcyx(path: Path, shape=(4, 2, 8, 9), **extra) -> Path:
    metadata = {"axes": "ZCYX", "spacing": 0.5, "unit": "micron",
                "Labels": ["dapi", "gfp"] * shape[0], **extra}
    tifffile.imwrite(path, ramp(shape), imagej=True, metadata=metadata,
                     resolution=(1 / 0.25, 1 / 0.2))
    return path


def ome_tczyx(path: Path, shape=(3, 2, 4, 8, 9), **extra) -> Path:
    metadata = {"axes": "TCZYX", "PhysicalSizeX": 0.1, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": 0.1, "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 0.3,
                "PhysicalSizeZUnit": "µm", "TimeIncrement": 2.5, "TimeIncrementUnit": "s",
                "Channel": {"Name": ["red", "green"], "EmissionWavelength": [610, 510]},
                **extra}
    tifffile.imwrite(path, ramp(shape), ome=True, metadata=metadata, photometric="minisblack")
    return path


# --- reading axes and metadata -------------------------------------------------------------


def test_imagej_zcyx_axes_physical_sizes_and_channel_names(tmp_path: Path) -> None:
    data, m = read_image_nd(imagej_zcyx(tmp_path / "h.tif"))
    assert data.dtype == np.float32 and data.shape == (4, 2, 8, 9)
    assert np.array_equal(data, ramp((4, 2, 8, 9)))
    assert (m.axes, m.dtype, m.kind, m.unit) == ("ZCYX", "uint16", "imagej", "micron")
    assert m.physical == pytest.approx({"Z": 0.5, "Y": 0.2, "X": 0.25})
    assert m.channel_names == ("dapi", "gfp")
    assert describe(m, data.shape) == "ZCYX 4x2x8x9 uint16, 0.5x0.2x0.25 µm, channels dapi, gfp"


def test_a_contradiction_is_told_in_our_letters(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"  # tifffile's S (a colour sample) is our C
    tifffile.imwrite(path, np.zeros((3, 8, 9), np.uint8), photometric="rgb",
                     planarconfig="separate")
    with pytest.warns(UserWarning, match="says 'CYX', 'SYX' in the file's letters"):
        data, m = read_image_nd(path, axes="SYX")
    assert m.axes == "SYX" and data.shape == (3, 8, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file's own axes given: no warning
        assert read_image_nd(path, axes="CYX")[1].axes == "CYX"


def test_imagej_tzcyx_hyperstack_keeps_every_axis_and_the_frame_interval(tmp_path) -> None:
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, ramp((2, 3, 2, 8, 9)), imagej=True,
                     metadata={"axes": "TZCYX", "finterval": 30.0, "unit": "\\u00B5m",
                               "spacing": 1.5, "Labels": [f"p{i}" for i in range(12)]},
                     resolution=(10.0, 10.0))
    data, m = read_image_nd(path)
    assert (m.axes, data.shape, m.unit) == ("TZCYX", (2, 3, 2, 8, 9), "µm")
    assert m.physical == pytest.approx({"T": 30.0, "Z": 1.5, "Y": 0.1, "X": 0.1})
    assert m.channel_names is None  # labels differ per plane: not channel names
    assert describe(m, data.shape) == "TZCYX 2x3x2x8x9 uint16, 1.5x0.1x0.1 µm, 30 s per frame"


def test_ome_tczyx_axes_physical_sizes_and_channel_names(tmp_path: Path) -> None:
    data, m = read_image_nd(ome_tczyx(tmp_path / "o.ome.tif"))
    assert (m.axes, data.shape, m.kind, m.unit) == ("TCZYX", (3, 2, 4, 8, 9), "ome", "µm")
    assert m.physical == pytest.approx({"T": 2.5, "Z": 0.3, "Y": 0.1, "X": 0.1})
    assert m.channel_names == ("red", "green") and "EmissionWavelength" in m.ome_xml


def test_plain_tiff_and_npy_follow_the_default_rules(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "p.tif", ramp((8, 9)))
    tifffile.imwrite(tmp_path / "s.tif", ramp((3, 8, 9)), photometric="minisblack")  # QYX
    np.save(tmp_path / "s.npy", ramp((3, 8, 9), np.float64))
    assert read_image_nd(tmp_path / "p.tif")[1].axes == "YX"
    tifffile.imwrite(tmp_path / "cm.tif", ramp((8, 9)), resolution=(5000, 2500),
                     resolutionunit="CENTIMETER")  # 5000 pixels per cm: 2 µm
    tifffile.imwrite(tmp_path / "dpi.tif", ramp((8, 9)), resolution=(300, 300),
                     resolutionunit="INCH")  # a print resolution, not a calibration
    m = read_image_nd(tmp_path / "cm.tif")[1]
    assert (m.physical, m.unit) == (pytest.approx({"X": 2.0, "Y": 4.0}), "µm")
    assert read_image_nd(tmp_path / "dpi.tif")[1].physical == {}
    assert read_image_nd(tmp_path / "s.tif")[1].axes == "SYX"
    data, m = read_image_nd(tmp_path / "s.npy")
    assert (m.axes, m.kind, m.dtype, m.physical, m.unit) == ("SYX", "npy", "float64", {}, None)
    np.save(tmp_path / "q.npy", ramp((2, 3, 8, 9)))
    with pytest.raises(InputError, match="q.npy: cannot tell the axes of a 4-D array"):
        read_image_nd(tmp_path / "q.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # naming axes the file leaves unnamed: no warning
        assert read_image_nd(tmp_path / "q.npy", axes="tzyx")[1].axes == "TZYX"
        assert read_image_nd(tmp_path / "s.tif", axes="ZYX")[1].axes == "ZYX"


def test_rgb_samples_become_a_channel_axis_and_alpha_is_dropped(tmp_path: Path) -> None:
    rgb = ramp((8, 9, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    data, m = read_image_nd(tmp_path / "rgb.tif")
    assert (m.axes, data.shape, m.dtype) == ("YXC", (8, 9, 3), "uint8")
    assert np.array_equal(data, rgb)
    tifffile.imwrite(tmp_path / "rgba.tif", ramp((2, 8, 9, 4), np.uint8), photometric="rgb",
                     extrasamples=["unassalpha"])
    data, m = read_image_nd(tmp_path / "rgba.tif")
    assert (m.axes, data.shape) == ("SYXC", (2, 8, 9, 3))
    tifffile.imwrite(tmp_path / "planar.tif", ramp((3, 8, 9), np.uint8), photometric="rgb",
                     planarconfig="separate")
    assert read_image_nd(tmp_path / "planar.tif")[1].axes == "CYX"


def test_two_channel_axes_are_refused_unless_the_axes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "crgb.tif"
    tifffile.imwrite(path, ramp((2, 8, 9, 3), np.uint8), photometric="rgb",
                     metadata={"axes": "CYXS"})
    with pytest.raises(InputError, match="crgb.tif: has both channels and colour samples"):
        read_image_nd(path)
    assert read_image_nd(path, axes="TYXC")[1].axes == "TYXC"


def test_an_axis_we_have_no_letter_for_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "lambda.tif"
    tifffile.imwrite(path, ramp((3, 8, 9)), metadata={"axes": "EYX"},
                     photometric="minisblack")
    with pytest.raises(InputError, match="lambda.tif: has a 'lambda' axis .* axes=") as info:
        read_image_nd(path)
    assert "\n" not in str(info.value)
    assert read_image_nd(path, axes="CYX")[1].axes == "CYX"


@pytest.mark.parametrize(("axes", "message"), [
    ("ZQYX", "axes 'ZQYX' has unknown letter(s) Q"),
    ("ZZYX", "axes 'ZZYX' names an axis twice"),
    ("ZYX", "axes 'ZYX' name 3 axes but the file has 4 (ZCYX 4x2x8x9)"),
    ("ZCTY", "axes 'ZCTY' must include Y and X"),
])
def test_bad_axes_strings_name_the_file(tmp_path: Path, axes: str, message: str) -> None:
    path = imagej_zcyx(tmp_path / "h.tif")
    with pytest.raises(InputError) as info:
        read_image_nd(path, axes=axes)
    assert str(info.value) == f"{path}: {message}" or str(info.value).startswith(
        f"{path}: {message}")


def test_axes_contradicting_the_metadata_win_with_a_warning(tmp_path: Path) -> None:
    path = imagej_zcyx(tmp_path / "h.tif")
    with pytest.warns(UserWarning, match="axes 'TCYX' given but the file says 'ZCYX'"):
        data, m = read_image_nd(path, axes="TCYX")
    assert m.axes == "TCYX" and data.shape == (4, 2, 8, 9)
    assert m.physical == pytest.approx({"Y": 0.2, "X": 0.25})  # Z's spacing is not T's
    assert m.channel_names == ("dapi", "gfp")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.tif", None, "file not found"),
    ("empty.tif", b"", "file is empty"),
    ("bad.tif", b"II*\x00garbage" * 10, "TIFF file contains no images"),
    ("bad2.tif", b"MM\x00*\x00\x00\x00\x08" + b"\xff" * 40, "not a readable TIFF file ("),
    ("cut.tif", "cut", "not a readable TIFF file (truncated or corrupt"),
    ("bad.npy", b"not numpy", "not a .npy file"),
])
def test_bad_files_give_one_line_errors(tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    if content == "cut":
        imagej_zcyx(path)
        path.write_bytes(path.read_bytes()[:1500])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_image_nd(path)
    assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)


def test_nan_and_non_numeric_pixels_are_refused(tmp_path: Path) -> None:
    nan = np.ones((8, 9), np.float32)
    nan[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "bool.npy", np.ones((8, 9), bool))
    with pytest.raises(InputError, match="nan.npy: contains 1 NaN/Inf pixels"):
        read_image_nd(tmp_path / "nan.npy")
    with pytest.raises(InputError, match="bool.npy: has boolean pixels"):
        read_image_nd(tmp_path / "bool.npy")


def test_microscope_formats_without_the_extra_name_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bioio" else object())
    path = tmp_path / "scan.czi"
    path.write_bytes(b"not really")
    with pytest.raises(InputError) as info:
        read_image_nd(path)
    assert str(info.value) == (f'{path}: .czi files need the formats extra: pip install '
                               f'"n2v-cascade[formats]" (or export the image as TIFF)')


def test_a_stack_written_by_io_write_image_reads_back_as_zyx(tmp_path: Path) -> None:
    write_image(tmp_path / "one.tif", np.ones((1, 8, 9), np.float32))
    data, m = read_image_nd(tmp_path / "one.tif")
    assert (m.axes, data.shape) == ("ZYX", (1, 8, 9))


# --- writing ------------------------------------------------------------------------------


def test_zcyx_imagej_round_trip_keeps_axes_sizes_names_and_extras(tmp_path: Path) -> None:
    ranges, luts = (0.0, 4000.0, 10.0, 900.0), [np.zeros((3, 256), np.uint8)] * 2
    data, m = read_image_nd(imagej_zcyx(tmp_path / "h.tif", Ranges=ranges, LUTs=luts))
    report = write_image_nd(tmp_path / "out.tif", data * 0.5, m)
    assert (report.path, report.n_clipped, report.dtype, report.kind) == (
        tmp_path / "out.tif", 0, "float32", "imagej")
    back, m2 = read_image_nd(tmp_path / "out.tif")
    assert np.array_equal(back, data * 0.5)
    assert (m2.axes, m2.dtype, m2.unit, m2.channel_names) == ("ZCYX", "float32", "micron",
                                                             ("dapi", "gfp"))
    assert m2.physical == pytest.approx(m.physical, rel=1e-6)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_imagej and not tif.is_ome
        assert tif.imagej_metadata["Ranges"] == ranges
        assert len(tif.imagej_metadata["LUTs"]) == 2


def test_tczyx_ome_round_trip_carries_the_input_ome_xml(tmp_path: Path) -> None:
    data, m = read_image_nd(ome_tczyx(tmp_path / "o.ome.tif"))
    report = write_image_nd(tmp_path / "out.ome.tif", data + 0.25, m)
    assert report.kind == "ome" and report.dtype == "float32"
    back, m2 = read_image_nd(tmp_path / "out.ome.tif")
    assert np.array_equal(back, data + 0.25)
    assert (m2.axes, m2.unit, m2.channel_names) == ("TCZYX", "µm", ("red", "green"))
    assert m2.physical == pytest.approx(m.physical)
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome and not tif.is_imagej and tif.series[0].dtype == np.float32
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert pixels["Type"] == "float" and pixels["DimensionOrder"] == "XYZCT"
    assert [c["EmissionWavelength"] for c in pixels["Channel"]] == [610, 510]  # carried
    assert pixels["TiffData"] == {"IFD": 0, "PlaneCount": 24}


def test_ome_output_is_fresh_when_the_shape_changed(tmp_path: Path) -> None:
    data, m = read_image_nd(ome_tczyx(tmp_path / "o.ome.tif"))
    write_image_nd(tmp_path / "crop.tif", data[:, :, :2], m)
    back, m2 = read_image_nd(tmp_path / "crop.tif")
    assert (m2.kind, m2.axes, back.shape, m2.channel_names) == ("ome", "TCZYX",
                                                               (3, 2, 2, 8, 9), ("red", "green"))
    assert "EmissionWavelength" not in m2.ome_xml and m2.physical == pytest.approx(m.physical)


def test_output_dtype_input_rounds_clips_and_counts(tmp_path: Path) -> None:
    m = meta("YX", kind="imagej")
    values = np.array([[-3.4, -0.4, 7.5, 65535.4, 65535.6, 70000.0]] * 2, np.float32)
    report = write_image_nd(tmp_path / "u.tif", values, m, output_dtype="input")
    assert (report.n_clipped, report.dtype, report.kind) == (6, "uint16", "imagej")
    stored = tifffile.imread(tmp_path / "u.tif")
    assert stored.dtype == np.uint16
    assert stored[0].tolist() == [0, 0, 8, 65535, 65535, 65535]
    floats = meta("YX", dtype="float32", kind="imagej")
    report = write_image_nd(tmp_path / "f.tif", values, floats, output_dtype="input")
    assert (report.n_clipped, report.dtype) == (0, "float32")
    assert np.array_equal(tifffile.imread(tmp_path / "f.tif"), values)
    values[0, 0] = np.nan
    with pytest.raises(InputError, match="n.tif: has 1 NaN/Inf values; cannot write them as"):
        write_image_nd(tmp_path / "n.tif", values, m, output_dtype="input")


def test_uint16_real_round_trip_is_exact(tmp_path: Path) -> None:
    data, m = read_image_nd(imagej_zcyx(tmp_path / "h.tif"))
    report = write_image_nd(tmp_path / "u.tif", data, m, output_dtype="input")
    assert report.n_clipped == 0 and np.array_equal(tifffile.imread(tmp_path / "u.tif"),
                                                    ramp((4, 2, 8, 9)))


def test_sample_axis_and_size_one_axes_survive_imagej(tmp_path: Path) -> None:
    data = ramp((2, 3, 1, 8, 9)).astype(np.float32)
    m = meta("STCYX", physical={"T": 4.0, "X": 0.5, "Y": 0.5}, unit="µm")
    write_image_nd(tmp_path / "s.tif", data, m)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:  # Fiji sees 6 frames
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.series[0].shape[0] == 6
    back, m2 = read_image_nd(tmp_path / "s.tif")
    assert (m2.axes, back.shape, m2.unit) == ("STCYX", data.shape, "µm")
    assert np.array_equal(back, data) and m2.physical == pytest.approx(m.physical)


def test_imagej_output_is_in_imagej_order(tmp_path: Path) -> None:
    data = ramp((2, 4, 8, 9)).astype(np.float32)  # CZYX from a .npy
    write_image_nd(tmp_path / "c.tif", data, meta("CZYX"))
    back, m2 = read_image_nd(tmp_path / "c.tif")
    assert m2.axes == "ZCYX" and np.array_equal(back, data.transpose(1, 0, 2, 3))


def test_ome_holds_samples_as_images_and_other_types(tmp_path: Path) -> None:
    data = ramp((2, 3, 8, 9)).astype(np.float32)
    write_image_nd(tmp_path / "s.ome.tif", data, meta("SCYX", kind="ome",
                                                      channel_names=("a", "b", "c")))
    with tifffile.TiffFile(tmp_path / "s.ome.tif") as tif:
        assert tif.is_ome and len(tif.series) == 2
    back, m2 = read_image_nd(tmp_path / "s.ome.tif")
    assert (m2.axes, m2.channel_names) == ("SCYX", ("a", "b", "c"))
    assert np.array_equal(back, data)
    report = write_image_nd(tmp_path / "i.tif", data, meta("SCYX", dtype="int32"),
                            output_dtype="input")
    assert (report.kind, report.dtype) == ("ome", "int32")  # ImageJ has no int32
    assert read_image_nd(tmp_path / "i.tif")[1].dtype == "int32"


def test_npy_output_is_the_array_as_is(tmp_path: Path) -> None:
    data = ramp((2, 8, 9)).astype(np.float32)
    report = write_image_nd(tmp_path / "a.npy", data, meta("CYX"), output_dtype="input")
    assert report.kind == "npy" and np.array_equal(np.load(tmp_path / "a.npy"), data)


def test_write_refuses_existing_files_inputs_and_mismatched_arrays(tmp_path: Path) -> None:
    path = imagej_zcyx(tmp_path / "h.tif")
    data, m = read_image_nd(path)
    out = tmp_path / "out.tif"
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="out.tif: already exists"):
        write_image_nd(out, data, m)
    assert out.read_bytes() == b"old"
    write_image_nd(out, data, m, overwrite=True)
    assert read_image_nd(out)[1].axes == "ZCYX"
    with pytest.raises(InputError, match="h.tif: is an input file; refusing to overwrite it"):
        write_image_nd(path, data, m, overwrite=True, protect=[path])
    with pytest.raises(InputError, match="axes 'ZCYX' name 4 axes but the array has 3"):
        write_image_nd(tmp_path / "x.tif", data[0], m)
    with pytest.raises(InputError, match="unsupported output type '.png'"):
        write_image_nd(tmp_path / "x.png", data, m)
    with pytest.raises(InputError, match="output_dtype: must be 'float32' or 'input'"):
        write_image_nd(tmp_path / "x.tif", data, m, output_dtype="uint8")  # type: ignore
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.tif", "out.tif"]


# --- the real files (skipped where /work/shared/data is absent) ---------------------------


@pytest.mark.parametrize(("relative", "axes", "shape", "physical", "names"), [
    ("lls_rbc_lattice_zyx/RBC_lattice.tif", "ZYX", (150, 118, 209),
     {"Z": 0.3, "Y": 0.145, "X": 0.145}, None),
    ("neubias_dna_conf_wf_zcyx/xyzc_16bit__dna_conf_wf.tif", "ZCYX", (45, 2, 130, 133),
     {"Z": 0.4994, "Y": 0.5119, "X": 0.5119}, None),
    ("aics_ome_tiff_physical_size_2d/s_1_t_1_c_1_z_1.ome.tiff", "YX", (325, 475),
     {"Y": 1.0833, "X": 1.0833}, None),
    ("aicspylibczi_cd_tczyx_multichannel/CD_s_1_t_3_c_2_z_5_TCZYX.ome.tif", "TCZYX",
     (3, 2, 5, 170, 240), {"Z": 0.32, "Y": 0.0906, "X": 0.0906},
     ("LED555 (Alexa Fluor 555)", "LED470 (Alexa Fluor 488)")),
    ("neubias_golgi_bfa/xyt_calibrated_16bit__golgi_bfa_sum_projection.tif", "TYX",
     (30, 137, 147), {"T": 59.86, "Y": 0.3514, "X": 0.3514}, None),
    ("bian_cancer_cell_migration_tyx/cancer_cell_migration_crop.tif", "SYX", (48, 130, 130),
     {}, None),
])
def test_real_files_axes_and_calibration(relative, axes, shape, physical, names) -> None:
    data, m = read_image_nd(real(relative))
    assert (m.axes, data.shape, m.channel_names) == (axes, shape, names)
    assert m.physical == pytest.approx(physical, rel=1e-3)
    assert (m.unit is not None) == bool(physical.keys() - {"T"})


@pytest.mark.parametrize("relative", [
    "neubias_dna_conf_wf_zcyx/xyzc_16bit__dna_conf_wf.tif",
    "aicspylibczi_cd_tczyx_multichannel/CD_s_1_t_3_c_2_z_5_TCZYX.ome.tif",
    "aics_ome_tiff_physical_size_2d/s_1_t_1_c_1_z_1.ome.tiff",
])
def test_real_files_round_trip(tmp_path: Path, relative: str) -> None:
    data, m = read_image_nd(real(relative))
    report = write_image_nd(tmp_path / "out.tif", data, m, output_dtype="input")
    back, m2 = read_image_nd(tmp_path / "out.tif")
    assert report.n_clipped == 0 and np.array_equal(back, data)
    unchanged = dataclasses.replace(m2, source=m.source, ome_xml=m.ome_xml,
                                    imagej_extra=m.imagej_extra, physical=m.physical)
    assert unchanged == m and m2.physical == pytest.approx(m.physical, rel=1e-6)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert (tif.is_imagej, tif.is_ome) == (m.kind == "imagej", m.kind == "ome")
    if m.kind == "ome" and importlib.util.find_spec("ome_types") is not None:
        import ome_types  # the carried OME-XML still follows the OME schema

        ome_types.from_xml(m2.ome_xml, validate=True)


def test_czi_through_bioio_equals_its_ome_tiff_copy() -> None:
    if importlib.util.find_spec("bioio") is None or importlib.util.find_spec("bioio_czi") is None:
        pytest.skip('bioio and bioio-czi are not installed (pip install "n2v-cascade[formats]")')
    data, m = read_image_nd(real("aicspylibczi_cd_tczyx_multichannel/CD_s_1_t_3_c_2_z_5.czi"))
    copy, c = read_image_nd(real("aicspylibczi_cd_tczyx_multichannel/"
                                 "CD_s_1_t_3_c_2_z_5_TCZYX.ome.tif"))
    assert (m.kind, m.axes, m.dtype, m.unit) == ("bioio", "TCZYX", "uint16", "µm")
    assert np.array_equal(data, copy)
    assert {k: m.physical[k] for k in "ZYX"} == pytest.approx(c.physical, rel=1e-6)
    assert m.channel_names == ("LED555", "LED470")


def test_bioio_errors_are_one_line(tmp_path: Path) -> None:
    if importlib.util.find_spec("bioio") is None:
        pytest.skip('bioio is not installed (pip install "n2v-cascade[formats]")')
    for suffix in (".czi", ".nd2"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(b"garbage")
        with pytest.raises(InputError) as info:
            read_image_nd(path)
        text = str(info.value)
        if importlib.util.find_spec(f"bioio_{suffix[1:]}") is None:
            assert text == (f"{path}: no bioio reader for {suffix} files is installed: "
                            f'pip install "n2v-cascade[formats]"')
        else:
            assert text.startswith(f"{path}: not a readable {suffix[1:].upper()} file (")
        assert "\n" not in text
