"""UCF101 middle frames: CamelCase actions split into words ("ApplyEyeMakeup" -> "Apply_Eye_Makeup")."""
import os
import re

from dassl_compat import DATASET_REGISTRY
from errors import DatasetError

from .common import SplitDataset, check_item_groups, make_items, require_file, split_trainval

HINT = "ucfTrainTestlist/ comes with the official UCF101TrainTestSplits-RecognitionTask.zip."


@DATASET_REGISTRY.register()
class UCF101(SplitDataset):
    TEMPLATE = "a photo of a person doing {}."
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    downloads = {split_file: "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"}

    def make_split(self):
        labels = {}
        with open(require_file(os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt"), self.name, HINT)) as f:
            for line in f:
                if line.strip():
                    label, action = line.strip().split(" ")
                    labels[action] = int(label) - 1
        trainval = self.read_list("trainlist01.txt", labels)
        test = self.read_list("testlist01.txt", labels)
        check_item_groups({"trainlist01.txt": trainval, "testlist01.txt": test}, self.name,
                          self.image_dir)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, filename, labels):
        rows = []
        with open(require_file(os.path.join(self.dataset_dir, "ucfTrainTestlist", filename), self.name, HINT)) as f:
            for line in f:
                if not line.strip():
                    continue
                action, video = line.strip().split(" ")[0].split("/")
                if action not in labels:
                    raise DatasetError(f"{self.name}: {filename} names action {action!r}, which classInd.txt lacks.")
                classname = "_".join(re.findall("[A-Z][^A-Z]*", action))
                rows.append((f"{classname}/{video.replace('.avi', '.jpg')}", labels[action], classname))
        return make_items(rows, self.image_dir, self.name, filename, check=False)
