"""Networks the suite trains itself: M1 (Kornblith et al. 2019's tiny CNN), its training recipe, the cached zoo,
and the activations of any of them on images."""
