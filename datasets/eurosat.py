"""EuroSAT (RGB, 64x64): folder names spelled out ("SeaLake" -> "Sea or Lake")."""
from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, split_class_folders

RENAMED = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitDataset):
    TEMPLATE = "a centered satellite photo of {}."
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    downloads = {split_file: "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"}

    def make_split(self):
        return split_class_folders(self.image_dir, rename=RENAMED)
