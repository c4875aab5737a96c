"""Similar-class batches for the image set of Proxy-FDA (the paper's hard class mining): each
batch holds m classes that are similar under frozen text features, n images each.

Per batch, a seed class is taken in turn from a random permutation of the classes, and joined
by its m - 1 most similar classes. A class with fewer than n images contributes all of them plus
random repeats (the augmentation makes the repeats different views). The random stream is drawn
from torch's global generator at the start of each epoch, so seeding torch fixes the batches.
"""
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from errors import ConfigError


def class_similarity(text_features):
    """Cosine similarity [C, C] of class features [C, d] (e.g. frozen CLIP text features)."""
    z = F.normalize(text_features.detach().float(), dim=-1)
    return z @ z.t()


class SimilarClassBatchSampler(Sampler):
    """Yields lists of dataset indices, m classes x n images each (use as ``batch_sampler``).

    ``labels``: the label of every dataset item, in dataset order. ``similarity``: [C, C] class
    similarity (see ``class_similarity``). ``num_batches``: batches per epoch, by default
    len(labels) // (m * n), at least 1.
    """

    def __init__(self, labels, similarity, num_classes, num_images, num_batches=None):
        if num_classes < 1 or num_images < 1:
            raise ConfigError("PROXYFDA.SAMPLER.NUM_CLASSES and NUM_IMAGES must be >= 1.")
        labels = [int(y) for y in labels]
        similarity = torch.as_tensor(similarity, dtype=torch.float32)
        if labels and max(labels) >= similarity.shape[0]:
            raise ConfigError(
                f"Label {max(labels)} has no row in the {similarity.shape[0]}-class similarity."
            )
        self.class_indices = {}
        for index, label in enumerate(labels):
            self.class_indices.setdefault(label, []).append(index)
        if not self.class_indices:
            raise ConfigError("SimilarClassBatchSampler needs a non-empty dataset.")
        self.classes = sorted(self.class_indices)
        present = torch.tensor(self.classes)
        self.similarity = similarity[present][:, present].clone()
        self.similarity.fill_diagonal_(float("-inf"))
        self.num_classes = min(num_classes, len(self.classes))
        self.num_images = num_images
        self.num_batches = num_batches or max(1, len(labels) // (num_classes * num_images))

    def __len__(self):
        return self.num_batches

    def batch_classes(self, seed_position):
        """Positions (in ``self.classes``) of the seed class and its most similar classes."""
        neighbours = torch.topk(self.similarity[seed_position], self.num_classes - 1).indices
        return [seed_position] + neighbours.tolist()

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        seeds = []
        for _ in range(self.num_batches):
            if not seeds:
                seeds = torch.randperm(len(self.classes), generator=generator).tolist()
            batch = []
            for position in self.batch_classes(seeds.pop()):
                batch.extend(self._draw(self.class_indices[self.classes[position]], generator))
            yield batch

    def _draw(self, indices, generator):
        n = self.num_images
        order = torch.randperm(len(indices), generator=generator).tolist()
        picked = [indices[i] for i in order[:n]]
        if len(picked) < n:
            extra = torch.randint(len(indices), (n - len(picked),), generator=generator).tolist()
            picked += [indices[i] for i in extra]
        return picked
