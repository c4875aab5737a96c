"""Hand-crafted prompt templates (CLIP / CoOp), per registered dataset name."""

DEFAULT_TEMPLATE = "a photo of a {}."

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    # The CPU benchmark's sets (benchmark/README.md): the tiny CLIP was pretrained with this
    # template among others (benchmark/sets.py, COMMON_TEMPLATES), and the benchmark's
    # zero-shot reference and forgetting use it, so it is the hand-crafted prompt for all four.
    "FashionMNIST": "a photo of a {}.",
    "AnimalMNIST": "a photo of a {}.",
    "MNIST": "a photo of a {}.",
    "Digits": "a photo of a {}.",
}

# The 7-template subset CoOp's ZeroshotCLIP2 ensembles.
IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def dataset_template(dataset_name):
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def clean_classname(name):
    return name.replace("_", " ")


# KgCoOp's own per-dataset templates for its hand-crafted text features; they
# differ from CUSTOM_TEMPLATES only for DTD.
KGCOOP_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "DescribableTextures": "a photo of a {}, a type of texture.",
}


def kgcoop_template(dataset_name):
    return KGCOOP_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


# PromptSRC's teacher text features average these 60 templates (PromptSRC's
# trimmed copy of CLIP's 80 ImageNet templates, in its order).
PROMPTSRC_TEMPLATES = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
]
