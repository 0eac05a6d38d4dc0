"""What leaves the building: webhooks, their guard and signatures."""
