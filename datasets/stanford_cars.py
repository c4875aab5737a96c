"""Stanford Cars: 196 models; split paths are relative to the dataset folder itself."""
import os

from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, check_item_groups, make_items, require_file, split_trainval


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    TEMPLATE = "a photo of a {}."
    dataset_dir = "stanford_cars"
    image_subdir = ""  # paths in the split read "cars_train/00001.jpg"
    split_file = "split_zhou_StanfordCars.json"
    downloads = {split_file: "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"}

    def make_split(self):
        meta = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_annotations("cars_train", os.path.join("devkit", "cars_train_annos.mat"), meta)
        test = self.read_annotations("cars_test", "cars_test_annos_withlabels.mat", meta)
        check_item_groups({"cars_train_annos.mat": trainval, "cars_test_annos_withlabels.mat": test},
                          self.name, self.dataset_dir)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, image_folder, anno_file, meta_file):
        from scipy.io import loadmat

        hint = "It comes with the official devkit (car_devkit.tgz) and cars_test_annos_withlabels.mat."
        annos = loadmat(require_file(os.path.join(self.dataset_dir, anno_file), self.name, hint))["annotations"][0]
        names = loadmat(require_file(meta_file, self.name, hint))["class_names"][0]
        rows = []
        for anno in annos:
            label = int(anno["class"][0, 0]) - 1
            words = str(names[label][0]).split(" ")
            classname = " ".join([words[-1]] + words[:-1])  # the year goes first: "2012 Tesla Model S"
            rows.append((os.path.join(image_folder, str(anno["fname"][0])), label, classname))
        return make_items(rows, self.dataset_dir, self.name, anno_file, check=False)
