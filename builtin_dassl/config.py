"""Dassl 0.6.3's config defaults, key for key, so that peer YAML files merge.

Only the keys marked (used) matter to this project; the others (domain
adaptation, semi-supervised learning, other trainers) are kept so that configs
written for upstream Dassl merge without "Non-existent key" errors.
"""
from yacs.config import CfgNode as CN


def get_cfg_default():
    return _C.clone()


_C = CN()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"  # (used) log.txt, checkpoints, tensorboard
_C.RESUME = ""  # (used) directory to resume from; default OUTPUT_DIR
_C.SEED = -1  # (used) negative: do not seed
_C.USE_CUDA = True  # (used)
_C.VERBOSE = True  # (used) print trainer/dataset/evaluator names and summaries

_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)  # (used)
_C.INPUT.INTERPOLATION = "bilinear"  # (used) bilinear | bicubic | nearest
_C.INPUT.TRANSFORMS = ()  # (used) see data/transforms.py
_C.INPUT.NO_TRANSFORM = False  # (used) True: loaders return PIL images
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # (used) ImageNet
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]  # (used)
_C.INPUT.CROP_PADDING = 4  # (used) random_crop
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # (used) random_resized_crop
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

_C.DATASET = CN()
_C.DATASET.ROOT = ""  # (used)
_C.DATASET.NAME = ""  # (used) a DATASET_REGISTRY name
_C.DATASET.SOURCE_DOMAINS = ()  # (used)
_C.DATASET.TARGET_DOMAINS = ()  # (used)
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1  # (used) images per class; < 1 means all
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4  # (used)
_C.DATALOADER.K_TRANSFORMS = 1  # (used) augmented views per training image
_C.DATALOADER.RETURN_IMG0 = False  # (used) also return the un-augmented image
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"  # (used)
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # (used)
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"  # (used)
_C.DATALOADER.TEST.BATCH_SIZE = 32  # (used)

_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # (used)
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""  # (used)
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"  # (used) adam | amsgrad | sgd | rmsprop | adamw
_C.OPTIM.LR = 0.0003  # (used)
_C.OPTIM.WEIGHT_DECAY = 5e-4  # (used)
_C.OPTIM.MOMENTUM = 0.9  # (used) sgd, rmsprop
_C.OPTIM.SGD_DAMPNING = 0  # (used)
_C.OPTIM.SGD_NESTEROV = False  # (used)
_C.OPTIM.RMSPROP_ALPHA = 0.99  # (used)
_C.OPTIM.ADAM_BETA1 = 0.9  # (used) adam, amsgrad, adamw
_C.OPTIM.ADAM_BETA2 = 0.999  # (used)
_C.OPTIM.STAGED_LR = False  # (used) NEW_LAYERS get LR, the rest LR * BASE_LR_MULT
_C.OPTIM.NEW_LAYERS = ()  # (used)
_C.OPTIM.BASE_LR_MULT = 0.1  # (used)
_C.OPTIM.LR_SCHEDULER = "single_step"  # (used) single_step | multi_step | cosine
_C.OPTIM.STEPSIZE = (-1,)  # (used) single_step: <= 0 means MAX_EPOCH
_C.OPTIM.GAMMA = 0.1  # (used)
_C.OPTIM.MAX_EPOCH = 10  # (used)
_C.OPTIM.WARMUP_EPOCH = -1  # (used) > 0 turns warmup on
_C.OPTIM.WARMUP_TYPE = "linear"  # (used) linear | constant
_C.OPTIM.WARMUP_CONS_LR = 1e-5  # (used) constant warmup LR
_C.OPTIM.WARMUP_MIN_LR = 1e-5  # (used) linear warmup LR of the first epoch
_C.OPTIM.WARMUP_RECOUNT = True  # (used) main schedule starts afresh after warmup

_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # (used) epochs; <= 0 saves the last epoch only
_C.TRAIN.PRINT_FREQ = 10  # (used) batches
_C.TRAIN.COUNT_ITER = "train_x"

_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"  # (used)
_C.TEST.PER_CLASS_RESULT = False  # (used)
_C.TEST.COMPUTE_CMAT = False  # (used) saves OUTPUT_DIR/cmat.pt
_C.TEST.NO_TEST = False  # (used)
_C.TEST.SPLIT = "test"  # (used) test | val
_C.TEST.FINAL_MODEL = "last_step"  # (used) last_step | best_val

_C.TRAINER = CN()
_C.TRAINER.NAME = ""  # (used) a TRAINER_REGISTRY name

# Upstream Dassl's own trainers (not provided here; kept for config merging).
_C.TRAINER.MCD = CN({"N_STEP_F": 4})
_C.TRAINER.MME = CN({"LMDA": 0.1})
_C.TRAINER.CDAC = CN({
    "CLASS_LR_MULTI": 10, "RAMPUP_COEF": 30, "RAMPUP_ITRS": 1000,
    "TOPK_MATCH": 5, "P_THRESH": 0.95, "STRONG_TRANSFORMS": (),
})
_C.TRAINER.SE = CN({"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300})
_C.TRAINER.M3SDA = CN({"LMDA": 0.5, "N_STEP_F": 4})
_C.TRAINER.DAEL = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
_C.TRAINER.CROSSGRAD = CN({"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5})
_C.TRAINER.DDAIG = CN({
    "G_ARCH": "", "LMDA": 0.3, "CLAMP": False, "CLAMP_MIN": -1.0,
    "CLAMP_MAX": 1.0, "WARMUP": 0, "ALPHA": 0.5,
})
_C.TRAINER.DAELDG = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
_C.TRAINER.DOMAINMIX = CN({"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0})
_C.TRAINER.ENTMIN = CN({"LMDA": 1e-3})
_C.TRAINER.MEANTEACHER = CN({"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5})
_C.TRAINER.MIXMATCH = CN({"WEIGHT_U": 100.0, "TEMP": 2.0, "MIXUP_BETA": 0.75, "RAMPUP": 20000})
_C.TRAINER.FIXMATCH = CN({"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
