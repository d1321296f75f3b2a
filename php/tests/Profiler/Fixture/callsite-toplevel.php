<?php

// Top-level code for CallSiteTest (never run).

session_start();
$user = 'x'; // resume: top-level
