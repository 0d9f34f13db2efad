"""Registration of this package's transfer components in mmdet / mmseg.

mmengine resolves a scoped type (``'mlmask_mm.X'``) only among the root
registry's direct children, and this package's registries are children of
mmpretrain's: from an mmdet or mmseg config ``type='mlmask_mm.X'`` is not
found.  An mmdet / mmseg config therefore imports the matching module, which
registers the components in that library's own registries, and names them
without a scope:

    custom_imports = dict(imports=['mlmask_mm.transfer.mmdet_components'])
    neck = dict(type='SimpleFeaturePyramid', ...)

(``mmpretrain.VisionTransformer`` resolves from everywhere: mmpretrain's
registries are direct children of the root.)
"""
