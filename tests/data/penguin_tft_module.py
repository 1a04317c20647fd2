# Copyright 2021 Google LLC. All Rights Reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""TFX's penguin module on data whose label is a string: preprocessing_fn from TFX's Transform tutorial.

TFX's "Feature Engineering using TFX Pipeline and TensorFlow Transform" tutorial (penguin_tft)
reads penguins with a string ``species`` and maps it to class ids inside ``preprocessing_fn``;
its comment names ``tft.compute_and_apply_vocabulary()`` as the way to compute the mapping from
the data, which is what this module does, and z-scores the measurements as the tutorial does.
Everything else (``tuner_fn``, ``run_fn``, the Keras model, the serving signature) is TFX's penguin
module beside this file, unchanged. No EvalConfig comes with it: kubetfx derives one.
"""

import tensorflow_transform as tft

import penguin_tfx_module as base  # kubetfx: TFX's penguin module, next to this file


# TFX Transform will call this function.
def preprocessing_fn(inputs):
  """tf.transform's callback function for preprocessing inputs."""
  outputs = {}
  for key in base.FEATURE_KEYS:
    # tft.scale_to_z_score computes the mean and variance of the given feature
    # and scales the output based on the result.
    outputs[base.transformed_name(key)] = tft.scale_to_z_score(inputs[key])
  # The string label mapped to an index, with a vocabulary computed from the data.
  outputs[base.transformed_name(base._LABEL_KEY)] = tft.compute_and_apply_vocabulary(
      inputs[base._LABEL_KEY], vocab_filename='species')
  return outputs


# TFX Tuner will call this function.
def tuner_fn(fn_args):
  return base.tuner_fn(fn_args)


# TFX Trainer will call this function.
def run_fn(fn_args):
  return base.run_fn(fn_args)
