"""The built-in attribution methods: one ``MethodSpec`` each (``mikata.attribution.registry``).

Order is the order ``mikata explain --methods list`` shows. Adding a method: a module with a
``run(ctx)`` function and one entry here (or ``registry.register(...)`` from your own code).
"""

from __future__ import annotations

from mikata.attribution import attention_rollout, attnlrp, gradient_rollout
from mikata.attribution import cam, deeplift, gradients, integrated_gradients, lime, lrp, occlusion, scorecam
from mikata.attribution import smoothgrad as sg
from mikata.attribution import registry
from mikata.attribution.registry import MethodSpec

_CAM = (("plain", "layer"),)

BUILTIN: tuple[MethodSpec, ...] = (
    MethodSpec("gradcam", "Grad-CAM", "layer", cam.run_gradient_cam(cam.gradcam), _CAM, needs_layer=True,
               layer_resolution=True, grid=True, summary="gradient-weighted channels (Selvaraju et al. 2017)"),
    MethodSpec("gradcam++", "Grad-CAM++", "layer", cam.run_gradient_cam(cam.gradcam_plus_plus), _CAM,
               needs_layer=True, layer_resolution=True, grid=True, summary="Chattopadhay et al. 2018"),
    MethodSpec("layercam", "LayerCAM", "layer", cam.run_gradient_cam(cam.layercam), _CAM, needs_layer=True,
               layer_resolution=True, grid=True, summary="element-wise positive gradients (Jiang et al. 2021)"),
    MethodSpec("xgradcam", "XGrad-CAM", "layer", cam.run_gradient_cam(cam.xgradcam), _CAM, needs_layer=True,
               layer_resolution=True, summary="Fu et al. 2020"),
    MethodSpec("eigencam", "EigenCAM", "layer", cam.run_eigencam, needs_layer=True, layer_resolution=True,
               summary="first principal component of the activations, class independent"),
    MethodSpec("scorecam", "Score-CAM", "perturbation", scorecam.run, needs_layer=True, layer_resolution=True,
               summary="channels weighted by the logit of the input masked by them (Wang et al. 2020)"),
    MethodSpec("saliency", "Saliency", "gradient", gradients.saliency, (("plain", "input"),), reduce="maxabs",
               grid=True, summary="|gradient| (Simonyan et al. 2014)"),
    MethodSpec("saliency-signed", "Signed saliency", "gradient", gradients.saliency_signed, (("plain", "input"),),
               signed=True, summary="the input gradient"),
    MethodSpec("grad-x-input", "Gradient x Input", "gradient", gradients.grad_x_input, (("plain", "input"),),
               signed=True, summary="gradient times input"),
    MethodSpec("guided-backprop", "Guided Backprop", "gradient", gradients.guided_backprop, (("guided", "input"),),
               reduce="maxabs", rectifiers=True, summary="Springenberg et al. 2015"),
    MethodSpec("deconv", "Deconvnet", "gradient", gradients.deconv, (("deconv", "input"),), reduce="maxabs",
               rectifiers=True, summary="Zeiler & Fergus 2014"),
    MethodSpec("guided-gradcam", "Guided Grad-CAM", "gradient", gradients.guided_gradcam,
               (("plain", "layer"), ("guided", "input")), needs_layer=True, reduce="maxabs", grid=True,
               rectifiers=True, summary="Guided Backprop times Grad-CAM"),
    MethodSpec("smoothgrad", "SmoothGrad", "sampling", sg.run_variant("smoothgrad"), needs_layer=sg.needs_layer,
               signed=sg.signed("smoothgrad"),
               reduce=sg.reduction, summary="mean of a gradient method over noisy copies (Smilkov et al. 2017)"),
    MethodSpec("smoothgrad-squared", "SmoothGrad-Squared", "sampling", sg.run_variant("smoothgrad-squared"),
               needs_layer=sg.needs_layer, reduce=sg.reduction, signed=sg.signed("smoothgrad-squared"),
               summary="mean square over noisy copies"),
    MethodSpec("vargrad", "VarGrad", "sampling", sg.run_variant("vargrad"), needs_layer=sg.needs_layer,
               signed=sg.signed("vargrad"),
               reduce=sg.reduction, summary="variance over noisy copies"),
    MethodSpec("integrated-gradients", "Integrated Gradients", "sampling", integrated_gradients.run, signed=True,
               summary="path integral of gradients from a baseline (Sundararajan et al. 2017)"),
    MethodSpec("deeplift", "DeepLIFT", "gradient", deeplift.run, signed=True, rectifiers=True,
               summary="Rescale rule (Shrikumar et al. 2017)"),
    MethodSpec("occlusion", "Occlusion", "perturbation", occlusion.run, signed=True,
               summary="logit drop under a sliding window"),
    MethodSpec("lrp", "LRP", "gradient", lrp.run, signed=True, summary="Layer-wise Relevance Propagation (zennit)"),
    MethodSpec("lime", "LIME", "perturbation", lime.run, signed=True, summary="superpixel surrogate model"),
    MethodSpec("attention-rollout", "Attention rollout", "attention", attention_rollout.run, layer_resolution=True,
               attention="probs", summary="head-averaged attention multiplied through the blocks, class "
               "independent (Abnar & Zuidema 2020); transformers only"),
    MethodSpec("gradient-rollout", "Gradient rollout", "attention", gradient_rollout.run, layer_resolution=True,
               attention="grads", summary="gradient-weighted attention rollout, class specific (Chefer, Gur & "
               "Wolf 2021); transformers only"),
    MethodSpec("attnlrp", "AttnLRP", "attention", attnlrp.run, signed=True,
               summary="LRP through softmax attention, layer norm and matrix products (Achtibat et al. 2024); "
               "transformers only"),
)

for _spec in BUILTIN:  # the package's __init__ imports this module first, so explain always sees them
    registry.register(_spec, replace=True)
