"""Data: the synthetic face benchmark with exact ground truth, and real-data preparation.

Synthetic: ``build_benchmark`` writes a preset (ci, cpu, gpu, paper) of splits lab_train,
lab_test, wild_train, wild_test and scans; ``FaceNormalDataset`` reads them.
Real: ``load_image``, face detection and crops (``detect_faces``, ``crop_face``, ``uncrop``,
``prepare_face_folder``; as a training split without ground truth, ``prepare_wild_photos``),
Photoface captures (``photometric_stereo``, ``prepare_photoface``) and scans (``read_mesh``,
``read_coloured_mesh``, ``render_mesh_normals``, ``render_scan``, ``prepare_scan_folder``; as split
scans, ``prepare_scans``).
"""
from .benchmark import (BENCHMARK_PRESETS, DATA_FOLDER, SPLITS, BenchmarkConfig, benchmark_folder, build_benchmark,
                        manifest_hash, plan_splits, summarize_manifest)
from .dataset import FaceNormalDataset, FieldsOf, preview_grid, stereo_error
from .faces import (CROP_SCALE, CropTransform, DetectorUnavailableError, FaceBox, aligned_box, crop_face, detect_faces,
                    face_mask, prepare_face_folder, uncrop)
from .images import as_rgb, load_image
from .mesh import FaceShape, Mesh, SurfaceColour, read_coloured_mesh, read_mesh
from .photoface import PhotofaceLayout, load_photoface_capture, prepare_photoface
from .prepared import prepare_wild_photos
from .photometric import photometric_stereo
from .procedural import procedural_face
from .scans import prepare_scan_folder, prepare_scans, render_mesh_normals, render_scan
from .sfm import SurreyFaceModel
from .synthetic import LAB_LIGHTS, LIGHT_FIELDS, make_identity, render_sample

__all__ = [
    "BENCHMARK_PRESETS", "DATA_FOLDER", "SPLITS", "BenchmarkConfig", "benchmark_folder", "build_benchmark",
    "manifest_hash", "plan_splits", "summarize_manifest", "FaceNormalDataset", "FieldsOf", "preview_grid",
    "stereo_error", "CROP_SCALE", "CropTransform", "DetectorUnavailableError", "FaceBox", "aligned_box", "crop_face",
    "detect_faces", "face_mask", "prepare_face_folder", "uncrop", "as_rgb", "load_image", "FaceShape", "Mesh",
    "SurfaceColour", "read_coloured_mesh", "read_mesh", "PhotofaceLayout", "load_photoface_capture",
    "prepare_photoface", "prepare_wild_photos", "photometric_stereo", "procedural_face", "prepare_scan_folder",
    "prepare_scans", "render_mesh_normals", "render_scan", "SurreyFaceModel",
    "LAB_LIGHTS", "LIGHT_FIELDS", "make_identity", "render_sample",
]
