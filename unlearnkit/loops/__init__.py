"""The public loop helpers every method uses, data-parallel forms included: training
(:mod:`.training`: ``fit``, recipes, optimisers, losses) and the epoch building blocks
(:mod:`.helpers`). The face keeps the names ``unlearnkit.loops`` had before 0.3, each re-exported
explicitly (``name as name``, PEP 484) so that the list is written once."""

from unlearnkit.loops.helpers import EpochLoss as EpochLoss
from unlearnkit.loops.helpers import batch_gradients as batch_gradients
from unlearnkit.loops.helpers import ce_epoch as ce_epoch
from unlearnkit.loops.helpers import endless as endless
from unlearnkit.loops.helpers import endless_parts as endless_parts
from unlearnkit.loops.helpers import kl_to_target as kl_to_target
from unlearnkit.loops.helpers import log_losses as log_losses
from unlearnkit.loops.helpers import mask_gradients_ as mask_gradients_
from unlearnkit.loops.helpers import no_divergence as no_divergence
from unlearnkit.loops.helpers import per_class_subset as per_class_subset
from unlearnkit.loops.helpers import random_fraction as random_fraction
from unlearnkit.loops.helpers import random_wrong_labels as random_wrong_labels
from unlearnkit.loops.helpers import relabel_epoch as relabel_epoch
from unlearnkit.loops.helpers import step as step
from unlearnkit.loops.helpers import trainable as trainable
