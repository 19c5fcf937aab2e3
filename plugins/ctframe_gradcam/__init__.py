"""ctframe built-in plugin: class activation maps from the ``grad-cam`` package (pytorch-grad-cam).

One explainer per CAM method (``ctframe explain --method gradcam|gradcam++|scorecam|...``). Importing
this package stays cheap: the package and torch load when an explainer is built.
"""

from __future__ import annotations

from ctframe import hookimpl

from .options import GradientCamOptions, PerturbationCamOptions

# registered name -> (pytorch_grad_cam class, gradient-free, description)
METHODS: dict[str, tuple[str, bool, str]] = {
    "gradcam": ("GradCAM", False, "Grad-CAM: activations weighted by the class score's mean gradient"),
    "gradcampp": ("GradCAMPlusPlus", False, "Grad-CAM++ (--method gradcam++): higher-order gradient weights"),
    "hirescam": ("HiResCAM", False, "HiResCAM: activations times gradients, element-wise (faithful)"),
    "xgradcam": ("XGradCAM", False, "XGrad-CAM: gradients normalised by the activations"),
    "layercam": ("LayerCAM", False, "LayerCAM: positive gradients per location"),
    "eigengradcam": ("EigenGradCAM", False, "first principal component of activations x gradients"),
    "eigencam": ("EigenCAM", True, "first principal component of the activations (ignores the class)"),
    "scorecam": ("ScoreCAM", True, "Score-CAM: class score of the image masked by each channel (slow)"),
    "ablationcam": ("AblationCAM", True, "Ablation-CAM: score drop when each channel is zeroed (slow)"),
}


def factory_for(method: str):
    class_name, _, _ = METHODS[method]

    def factory(options, context):
        from .cam import CamExplainer

        return CamExplainer(class_name, options)

    factory.__name__ = f"build_{method}"
    return factory


@hookimpl
def ctframe_register_explainers(register) -> None:
    for method, (_, gradient_free, description) in METHODS.items():
        options = PerturbationCamOptions if gradient_free else GradientCamOptions
        register(method, factory_for(method), options, description)
