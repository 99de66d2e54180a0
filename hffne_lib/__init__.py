"""hffne_lib: the reference implementation of "Towards High-Fidelity Face Normal Estimation".

One module per concern: conventions (normal-map axes and encoding), coarse (pix2pix U-Net and
PatchGAN), refiner (exemplar-based refinement and its variants), vgg (VGG19 and its weights),
losses, metrics, official (the authors' checkpoints), pipeline (inference), data (benchmarks
and real-data prep), rendering (shading and relighting), files (atomic writes).
"""
__version__ = "0.1.0"
