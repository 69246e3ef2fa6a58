"""Streaming inference: ``Pipeline`` (frame in -> depth, keypoints, matches, pose, covariance, timings out) over
interchangeable network runtimes (PyTorch, ONNX Runtime, TensorRT), and the small model shipped in the package."""

from .backends import BackendUnavailableError, NetworkBackend, create_backend
from .config import PipelineConfig
from .model_file import (
    SHIPPED_MODELS,
    InferenceModel,
    default_checkpoint_path,
    load_inference_model,
    model_path,
    pack_inference_model,
    save_inference_model,
    untrained_inference_model,
)
from .pipeline import LOST_VARIANCE, Pipeline
from .result import TIMING_STAGES, FrameResult, TrackingState

__all__ = [
    "LOST_VARIANCE",
    "SHIPPED_MODELS",
    "TIMING_STAGES",
    "BackendUnavailableError",
    "FrameResult",
    "InferenceModel",
    "NetworkBackend",
    "Pipeline",
    "PipelineConfig",
    "TrackingState",
    "create_backend",
    "default_checkpoint_path",
    "load_inference_model",
    "model_path",
    "pack_inference_model",
    "save_inference_model",
    "untrained_inference_model",
]
