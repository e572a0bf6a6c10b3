pub mod vgg19;
